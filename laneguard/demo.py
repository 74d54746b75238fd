"""`laneguard demo`: the whole product on one computer, with nothing to configure.

It prepares a demo store in ./data/demo (SQLite database, sample catalog imported), starts the
store server and prints the address to open. Later stages add simulated lanes to it.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=Path("data/demo"),
    show_default=True,
    help="Where the demo store keeps its database and files.",
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
def demo(data_dir: Path, host: str, port: int) -> None:
    """Run the demo store on this computer and print the address to open."""
    import uvicorn

    from product_db import SAMPLE_CATALOG
    from product_db.catalog import import_records
    from product_db.catalog_io import read_catalog_file
    from product_db.db import create_tables, make_engine
    from store_server.app import create_app
    from store_server.settings import StoreSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    settings = StoreSettings(
        database_url=f"sqlite:///{data_dir / 'store.sqlite3'}",
        data_dir=data_dir,
        host=host,
        port=port,
    )
    engine = make_engine(settings.database_url)
    create_tables(engine)
    report = import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, "sample catalog")
    engine.dispose()
    click.echo(f"Demo store ready in {data_dir}: {report.summary()}")
    click.echo("")
    click.echo(f"  Open the store console:  http://{host}:{port}/")
    click.echo("  Stop with Ctrl-C.")
    click.echo("")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
