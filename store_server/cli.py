"""`laneguard server ...`: run the store server."""

from __future__ import annotations

from pathlib import Path

import click

from laneguard.settings import ConfigError, load_settings
from store_server.settings import StoreSettings


@click.group()
def server() -> None:
    """The store server: the service the lanes report to, and the manager's web console."""


@server.command("run")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML settings file (every setting also reads LANEGUARD_<NAME>).",
)
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--db", "database_url", default=None, metavar="URL", help="Database URL.")
def run_command(
    config_file: Path | None, host: str | None, port: int | None, database_url: str | None
) -> None:
    """Start the store server and console; stop with Ctrl-C."""
    import uvicorn

    from store_server.app import create_app

    try:
        settings = load_settings(
            StoreSettings, config_file, host=host, port=port, database_url=database_url
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"LaneGuard store server: console at http://{settings.host}:{settings.port}/")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
