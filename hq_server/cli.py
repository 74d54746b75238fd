"""`laneguard hq ...`: run the chain's HQ and manage it from its own computer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hq_server.settings import HqSettings
from laneguard.settings import ConfigError, load_settings

if TYPE_CHECKING:
    from hq_server.outbox import HqOutbox

_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    default=None,
    help="YAML settings file (every setting also reads LANEGUARD_HQ_<NAME>).",
)
_db_option = click.option("--db", "database_url", default=None, metavar="URL", help="Database URL.")


@click.group()
def hq() -> None:
    """The chain's HQ: the service every store server reports to, and its console."""
    from store_server.auth import audit_client

    token = audit_client.set("cli")
    click.get_current_context().call_on_close(lambda: audit_client.reset(token))


def hq_settings(
    config_file: Path | None, database_url: str | None = None, **more: object
) -> HqSettings:
    try:
        return load_settings(HqSettings, config_file, database_url=database_url, **more)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _engine(settings: HqSettings) -> Engine:
    from hq_server.db import migrate
    from product_db.db import make_engine

    engine = make_engine(settings.database_url)
    migrate(engine)
    return engine


@hq.command("run")
@_config_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8100).")
@_db_option
def run_command(
    config_file: Path | None, host: str | None, port: int | None, database_url: str | None
) -> None:
    """Start HQ and its console; stop with Ctrl-C."""
    import uvicorn

    from hq_server.app import create_app
    from laneguard.slow_clients import server_options

    settings = hq_settings(config_file, database_url, host=host, port=port)
    scheme = "https" if settings.tls_cert else "http"
    click.echo(f"LaneGuard HQ: console at {scheme}://{settings.host}:{settings.port}/")
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        **server_options(),
    )


@hq.command("add-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["manager", "it_admin"]), default="manager")
@click.password_option("--password", help="Asked for when not given.")
@_config_option
@_db_option
def add_user_command(
    username: str, role: str, password: str, config_file: Path | None, database_url: str | None
) -> None:
    """Create an HQ console user (loss-prevention manager or IT admin)."""
    from store_server.auth import UserAccountError, create_user

    engine = _engine(hq_settings(config_file, database_url))
    try:
        create_user(engine, username, password, role)
    except UserAccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username} ({role}) created")


@hq.command("add-store")
@click.argument("store_id")
@click.option("--name", default="", help="A name people recognise, e.g. 'Riverside'.")
@_config_option
@_db_option
def add_store_command(
    store_id: str, name: str, config_file: Path | None, database_url: str | None
) -> None:
    """Print a one-time token STORE_ID's IT enrols its store server with."""
    from sqlmodel import Session

    from hq_server.stores import StoreEnrolmentError, add_store

    engine = _engine(hq_settings(config_file, database_url))
    with Session(engine) as session:
        try:
            token = add_store(session, store_id, name, "cli")
        except StoreEnrolmentError as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()
    click.echo(token)


@hq.command("catalog-import")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@_config_option
@_db_option
def catalog_import_command(path: Path, config_file: Path | None, database_url: str | None) -> None:
    """Import a price file into the chain's catalog and send what changed to every store."""
    from hq_server.app import hq_signing_key
    from hq_server.catalog import push_catalog_changes
    from hq_server.outbox import HqOutbox
    from product_db.catalog import import_records
    from product_db.catalog_io import read_catalog_file
    from product_db.errors import LaneGuardError

    settings = hq_settings(config_file, database_url)
    engine = _engine(settings)
    try:
        parsed = read_catalog_file(path, default_currency=settings.currency)
    except LaneGuardError as exc:
        raise click.ClickException(str(exc)) from None
    report = import_records(engine, parsed.records, str(path), rejected=len(parsed.rejected))
    sent = push_catalog_changes(engine, HqOutbox(engine, hq_signing_key(settings)))
    click.echo(f"{report.summary()}; {sent} products queued for the stores")


@hq.command("publish")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--notes", default="", help="What changed, shown in the consoles.")
@_config_option
@_db_option
def publish_command(
    bundle: Path, notes: str, config_file: Path | None, database_url: str | None
) -> None:
    """Sign BUNDLE with HQ's key and announce it to every store (roll it out from Releases)."""
    from sqlmodel import Session

    from hq_server.app import hq_signing_key
    from hq_server.outbox import HqOutbox
    from hq_server.releases import publish_release
    from laneguard.bundle import BundleError

    settings = hq_settings(config_file, database_url)
    engine = _engine(settings)
    key = hq_signing_key(settings)
    try:
        with Session(engine) as session:
            release = publish_release(
                session, HqOutbox(engine, key), settings.data_dir, bundle, key, "cli", notes
            )
            session.commit()
    except BundleError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"released {release.version} (release {release.release}, id {release.id})")


def _gallery_order(
    config_file: Path | None,
    database_url: str | None,
    order: Callable[[Session, HqOutbox], object],
    refused: tuple[type[Exception], ...],
) -> None:
    """Run an HQ IT order on the chain gallery in one transaction, its messages queued for
    every store; ``refused`` errors become the command's error message."""
    from hq_server.app import hq_signing_key
    from hq_server.outbox import HqOutbox

    settings = hq_settings(config_file, database_url)
    engine = _engine(settings)
    with Session(engine) as session:
        try:
            order(session, HqOutbox(engine, hq_signing_key(settings)))
        except refused as exc:
            raise click.ClickException(str(exc)) from None
        session.commit()


@hq.command("withdraw-entry")
@click.argument("entry_id", type=click.IntRange(1))
@click.option("--by", "username", required=True, help="Who takes it back (for the audit log).")
@_config_option
@_db_option
def withdraw_entry_command(
    entry_id: int, username: str, config_file: Path | None, database_url: str | None
) -> None:
    """Take a learned gallery entry back in every store (a store can take back only what it
    learned; another store's entry it finds wrong is HQ's to withdraw)."""
    from hq_server.intake import withdraw_by_hq

    _gallery_order(
        config_file,
        database_url,
        lambda session, outbox: withdraw_by_hq(session, outbox, entry_id, username),
        (LookupError,),
    )
    click.echo(f"entry {entry_id} withdrawn in every store (sent with HQ's next messages)")


@hq.command("confirm-entry")
@click.argument("entry_id", type=click.IntRange(1))
@click.option("--by", "username", required=True, help="Who confirms it (for the audit log).")
@_config_option
@_db_option
def confirm_entry_command(
    entry_id: int, username: str, config_file: Path | None, database_url: str | None
) -> None:
    """Send a learned gallery entry that waits for a second store to every store now (what the
    console's Gallery page does)."""
    from hq_server.gallery_release import GalleryReleaseError, confirm

    _gallery_order(
        config_file,
        database_url,
        lambda session, outbox: confirm(session, outbox, entry_id, username),
        (GalleryReleaseError,),
    )
    click.echo(f"entry {entry_id} goes to every store with HQ's next messages")


@hq.command("key")
@_config_option
def key_command(config_file: Path | None) -> None:
    """Print HQ's public key: lanes of every store need it in their bundle_keys."""
    from hq_server.app import hq_signing_key
    from laneguard.signing import public_pem

    click.echo(public_pem(hq_signing_key(hq_settings(config_file))), nl=False)


@hq.command("broker-config")
@_config_option
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the broker's configuration, certificate and JetStream storage.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address it listens on.")
@click.option("--port", type=click.IntRange(1, 65535), default=4222, show_default=True)
@click.option("--tls/--no-tls", default=True, show_default=True, help="TLS for every client.")
@click.option(
    "--name",
    "names",
    multiple=True,
    help="A name or address stores reach the broker by (its certificate is made for them; "
    "repeat for several). Default: the listening address, this computer's name, localhost.",
)
def broker_config_command(
    config_file: Path | None, out: Path, host: str, port: int, tls: bool, names: tuple[str, ...]
) -> None:
    """Write the chain broker's nats-server configuration: JetStream, a credential per store
    (HQ signs each store's at enrolment; anonymous clients are refused) and TLS."""
    from hq_server.broker import write_broker_config

    settings = hq_settings(config_file)
    files = write_broker_config(settings, out, host, port, tls, names)
    click.echo(f"run the broker:  nats-server -c {files.config}")
    click.echo(f"HQ's settings:   nats_url: {files.url(names[0] if names else host, port)}")
    if files.certificate is not None:
        click.echo(
            f"                 nats_ca_file: {files.certificate}  (stores get it at enrolment)"
        )


@hq.command("retention")
@click.option("--days", type=click.IntRange(1, 3650), default=None, help="Default: pooled_days.")
@_config_option
@_db_option
def retention_command(days: int | None, config_file: Path | None, database_url: str | None) -> None:
    """Delete pooled crops older than the retention days, and old outbox rows and receipts (HQ
    also does this hourly)."""
    from hq_server.retention import purge
    from store_server.media import MediaStore

    settings = hq_settings(config_file, database_url)
    report = purge(
        _engine(settings), MediaStore(settings.data_dir / "media"), days or settings.pooled_days
    )
    click.echo(
        f"{report.samples} pooled samples and {report.crops} crops deleted; "
        f"{report.broadcasts} outbox rows, {report.receipts} receipts"
    )
