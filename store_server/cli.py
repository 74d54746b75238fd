"""`laneguard server ...`: run the store server."""

from __future__ import annotations

import gc
from pathlib import Path

import click

from laneguard.settings import ConfigError, load_settings
from store_server.settings import StoreSettings


@click.group()
def server() -> None:
    """The store server: the service the lanes report to, and the manager's web console."""
    from store_server.auth import audit_client

    token = audit_client.set("cli")  # what the audit log says of changes made from here
    click.get_current_context().call_on_close(lambda: audit_client.reset(token))


def _tune_garbage_collector() -> None:
    """Python's cyclic garbage collector, left at its defaults, walks every object the server
    holds a few times a minute under ingest load, stalling all requests for ~100 ms (measured:
    request p99 104 ms at 500 transactions/s, 21 ms with this). Everything made at start-up
    is frozen out of its reach, and collections run after 100,000 new objects, not 700."""
    gc.freeze()
    gc.set_threshold(100_000, 50, 1000)


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
@click.option("--access-log/--no-access-log", default=True, help="Log every HTTP request.")
def run_command(
    config_file: Path | None,
    host: str | None,
    port: int | None,
    database_url: str | None,
    access_log: bool,
) -> None:
    """Start the store server and console; stop with Ctrl-C."""
    import uvicorn

    from laneguard.slow_clients import server_options
    from laneguard.tls import TlsBindingError
    from store_server.app import create_app
    from store_server.transport import base_url, tls_files

    try:
        settings = load_settings(
            StoreSettings, config_file, host=host, port=port, database_url=database_url
        )
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        certificate = tls_files(settings)
    except TlsBindingError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"LaneGuard store server: console at {base_url(settings)}/")
    app = create_app(settings)
    _tune_garbage_collector()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        access_log=access_log,
        ssl_certfile=str(certificate[0]) if certificate else None,
        ssl_keyfile=str(certificate[1]) if certificate else None,
        **server_options(),
    )


def store_settings(config_file: Path | None, database_url: str | None) -> StoreSettings:
    """The store server's settings from its YAML file and overrides, or a clean CLI error naming
    the bad key (shared by every command that works on a store's database)."""
    try:
        return load_settings(StoreSettings, config_file, database_url=database_url)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


_config_option = click.option(
    "--config", "config_file", type=click.Path(path_type=Path), default=None, help="YAML settings."
)
_db_option = click.option("--db", "database_url", default=None, metavar="URL", help="Database URL.")


@server.command("migrate")
@_config_option
@_db_option
def migrate_command(config_file: Path | None, database_url: str | None) -> None:
    """Bring the database to the newest schema (the server also does this on start)."""
    from product_db.db import make_engine
    from store_server.db import migrate

    engine = make_engine(store_settings(config_file, database_url).database_url)
    click.echo(f"database at revision {migrate(engine)}")


@server.command("retention")
@click.option(
    "--days", type=click.IntRange(min=1), default=None, help="Default: the store's retention_days."
)
@_config_option
@_db_option
def retention_command(config_file: Path | None, database_url: str | None, days: int | None) -> None:
    """Delete alert crops and clips past retention, training crops past
    sample_retention_days and detection frames past frame_retention_days, now (the server also
    does this hourly)."""
    from product_db.db import make_engine
    from store_server.db import migrate
    from store_server.media import MediaStore
    from store_server.retention import (
        purge_expired_evidence,
        purge_expired_frames,
        purge_expired_samples,
    )

    settings = store_settings(config_file, database_url)
    engine = make_engine(settings.database_url)
    migrate(engine)
    days = days or settings.retention_days
    report = purge_expired_evidence(engine, MediaStore(settings.data_dir / "media"), days)
    click.echo(
        f"evidence older than {days} days: {report.alerts} alerts cleared, {report.crops} crops "
        f"and {report.clips} clips deleted; {report.kept} alerts kept by a manager"
    )
    samples = purge_expired_samples(
        engine, MediaStore(settings.data_dir / "media"), settings.sample_retention_days
    )
    click.echo(
        f"training crops older than {settings.sample_retention_days} days: {samples.samples} "
        f"deleted ({samples.sample_files} files)"
    )
    frames = purge_expired_frames(
        engine, MediaStore(settings.data_dir / "media"), settings.frame_retention_days
    )
    click.echo(
        f"detection frames older than {settings.frame_retention_days} days: {frames.frames} "
        f"deleted ({frames.frame_files} files)"
    )


@server.command("add-user")
@click.argument("username")
@click.option("--role", type=click.Choice(["manager", "it_admin"]), default="manager")
@click.password_option("--password", help="Asked for when not given.")
@_config_option
@_db_option
def add_user_command(
    username: str, role: str, password: str, config_file: Path | None, database_url: str | None
) -> None:
    """Create a console user (store manager or IT admin)."""
    from product_db.db import make_engine
    from store_server.auth import UserAccountError, create_user
    from store_server.db import migrate

    engine = make_engine(store_settings(config_file, database_url).database_url)
    migrate(engine)
    try:
        create_user(engine, username, password, role)
    except UserAccountError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"user {username} ({role}) created")


@server.command("enrolment-token")
@click.argument("lane_id")
@click.option("--name", default="", help="A name people recognise, e.g. 'Lane 3 (express)'.")
@click.option("--hours", type=click.FloatRange(min=0.1), default=72.0, show_default=True)
@_config_option
@_db_option
def enrolment_token_command(
    lane_id: str, name: str, hours: float, config_file: Path | None, database_url: str | None
) -> None:
    """Print a one-time token a new lane enrols with (lane.yaml: enrolment_token)."""
    from product_db.db import make_engine
    from store_server.db import migrate
    from store_server.lanes import EnrolmentError, issue_enrolment_token
    from store_server.learning import store_key_id

    settings = store_settings(config_file, database_url)
    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        token = issue_enrolment_token(
            engine, lane_id, name, "cli", hours, store_key_id=store_key_id(settings)
        )
    except EnrolmentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(token)


@server.command("key-id")
@_config_option
@_db_option
def key_id_command(config_file: Path | None, database_url: str | None) -> None:
    """Print the store's key id: enrolment tokens end in it, and a lane given it
    (store_key_id) trusts only this store's discovery answers and gallery updates."""
    from store_server.learning import store_key_id

    click.echo(store_key_id(store_settings(config_file, database_url)))


@server.command("publish-bundle")
@click.argument("bundle", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--notes", default="", help="What changed, shown in the console.")
@click.option(
    "--gate-report",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="The trainer's gate report (JSON) to keep with it.",
)
@_config_option
@_db_option
def publish_bundle_command(
    bundle: Path,
    notes: str,
    gate_report: Path | None,
    config_file: Path | None,
    database_url: str | None,
) -> None:
    """Make BUNDLE available to this store's lanes (roll it out from the console's Rollouts)."""
    import json

    from sqlmodel import Session

    from laneguard.bundle import BundleError
    from laneguard.signing import SigningKeyError
    from product_db.db import make_engine
    from store_server.db import migrate
    from store_server.rollouts import publish_bundle

    settings = store_settings(config_file, database_url)
    engine = make_engine(settings.database_url)
    migrate(engine)
    report = json.loads(gate_report.read_text("utf-8")) if gate_report else None
    try:
        with Session(engine) as session:
            release = publish_bundle(
                session,
                settings.data_dir,
                bundle,
                "cli",
                notes,
                settings.bundle_keys,
                report,
            )
            session.commit()
            click.echo(
                f"published {release.version} (release {release.release}, id {release.id}, "
                f"sha256 {release.sha256})"
            )
    except (BundleError, SigningKeyError) as exc:
        raise click.ClickException(str(exc)) from None


@server.command("hq-enrol")
@click.option("--hq", "hq_url", required=True, metavar="URL", help="HQ's address, e.g. https://hq")
@click.option("--token", required=True, help="The one-time token HQ's IT admin made.")
@_config_option
def hq_enrol_command(hq_url: str, token: str, config_file: Path | None) -> None:
    """Enrol this store with its chain's HQ (once); the server links to HQ from its next start."""
    from store_server.chain_link import HqEnrolmentError, enrol_with_hq

    settings = store_settings(config_file, None)
    try:
        enrolment = enrol_with_hq(settings, hq_url, token)
    except HqEnrolmentError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"enrolled with HQ at {enrolment.hq_url} as store {enrolment.store_id}")


@server.command("price-override")
@click.argument("code")
@click.argument("price")
@_config_option
@_db_option
def price_override_command(
    code: str, price: str, config_file: Path | None, database_url: str | None
) -> None:
    """Set this store's own PRICE (e.g. 1.49) for CODE, kept over HQ's catalog changes."""
    from product_db.codes import InvalidCodeError, parse_code
    from product_db.db import make_engine
    from product_db.money import InvalidPriceError, parse_price_minor
    from store_server.chain_apply import UnknownProductError, set_price_override
    from store_server.db import migrate

    settings = store_settings(config_file, database_url)
    engine = make_engine(settings.database_url)
    migrate(engine)
    try:
        key = parse_code(code).key
        set_price_override(engine, key, parse_price_minor(price, settings.currency), "cli")
    except (InvalidCodeError, InvalidPriceError, UnknownProductError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{key}: this store's price is now {price} {settings.currency}")
