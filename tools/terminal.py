"""What every stage's command line shares: its settings, and tables on the terminal."""

from __future__ import annotations

import click

from infra.settings import Settings


def settings_from(ctx: click.Context) -> Settings:
    """The settings the `booth` group loaded, or fresh ones when a command runs on its own."""
    obj = ctx.find_root().obj
    if isinstance(obj, dict) and "settings" in obj:
        return obj["settings"]
    try:
        return Settings()
    except Exception as exc:
        raise click.ClickException(f"configuration error: {exc}") from exc


def print_table(rows: list[dict], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    if not rows:
        click.echo("(nothing)")
        return
    table = Table(title=title)
    for column in rows[0]:
        table.add_column(str(column))
    for row in rows:
        table.add_row(*(str(v) for v in row.values()))
    Console().print(table)
