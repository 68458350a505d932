"""`booth console` (registered on the `booth` group in booth/cli.py)."""

from __future__ import annotations

import ipaddress

import click

from tools.terminal import settings_from

_settings = settings_from


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("console")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Off loopback, put it behind TLS (docs/running.md: the console behind TLS).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port of the page.")
@click.option("--metrics/--no-metrics", default=True, help="Serve the console's /metrics on its Prometheus port.")
@click.pass_context
def console(ctx, host, port, metrics):
    """The operator console: start and end sessions, live previews, training, renditions, throughput.

    It asks for the operator password (BOOTH_CONSOLE_PASSWORD or a console_password file in
    BOOTH_SECRETS_DIR) and answers only to the host names in BOOTH_CONSOLE_HOSTS."""
    import uvicorn

    from console.app import SERVER_OPTIONS, create_app
    from console.auth import ConsoleConfigError

    settings = _settings(ctx)
    try:
        app = create_app(settings)
    except (ConsoleConfigError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    if not _is_loopback(host):
        if not settings.console_secure_cookie:
            click.echo(
                f"warning: serving the console on {host} over plain HTTP: its password and login cookie cross "
                "the network readable; put it behind TLS and set BOOTH_CONSOLE_SECURE_COOKIE=true",
                err=True,
            )
        if all(_is_loopback(h) for h in settings.console_host_names()):
            click.echo(
                f"warning: the console answers only to {settings.console_hosts}; set BOOTH_CONSOLE_HOSTS to the "
                "name browsers use to reach it",
                err=True,
            )
    if metrics:
        from infra.metrics import serve

        serve(settings, "console")
    click.echo(f"console on http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, **SERVER_OPTIONS)
