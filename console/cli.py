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
    help="Address to listen on. The page has no login: keep it on loopback unless something in front authenticates.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port of the page.")
@click.option("--metrics/--no-metrics", default=True, help="Serve the console's /metrics on its Prometheus port.")
@click.pass_context
def console(ctx, host, port, metrics):
    """The operator console: start and end sessions, live previews, training, renditions, throughput."""
    import uvicorn

    from console.app import create_app

    settings = _settings(ctx)
    if not _is_loopback(host):
        click.echo(
            f"warning: serving the console on {host}: anyone who reaches it can start and end sessions", err=True
        )
    if metrics:
        from infra.metrics import serve

        serve(settings, "console")
    click.echo(f"console on http://{host}:{port}/")
    # A short graceful shutdown: open event streams never end by themselves.
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
