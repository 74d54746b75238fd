"""The demo store (`laneguard demo`): the whole product on one computer, with nothing to configure.

It prepares a demo store in ./data/demo (SQLite database, sample catalog imported), starts the
store server and simulated checkout lanes, and prints the addresses to open. Each lane is the
real lane software watching a simulated camera (the simulator's live feed, mixing honest
customers with skip-scans, ticket switches and the rest) whose till sends its scans to the lane;
lanes deliver transactions and alerts to the store server like lanes in a store.
"""

from __future__ import annotations

import contextlib
import os
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import click

from laneguard.serving import serve_in_thread

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

DEMO_MANAGER = ("manager", "laneguard-demo")
DEMO_ADMIN = ("admin", "laneguard-admin")
DEMO_BROKER = ("127.0.0.1", 1883)  # where `make demo` looks for an MQTT broker


def run_demo(data_dir: Path, host: str, port: int, lanes: int, fps: float) -> None:
    """Run the demo store and its simulated lanes; print the addresses to open."""
    import signal
    import threading

    from product_db import SAMPLE_CATALOG
    from product_db.catalog import import_records
    from product_db.catalog_io import read_catalog_file
    from product_db.db import make_engine
    from store_server.app import create_app
    from store_server.db import migrate
    from store_server.learning import store_key_id
    from store_server.settings import StoreSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    release_key = _release_key(data_dir)
    broker = _local_broker()
    settings = StoreSettings(
        database_url=f"sqlite:///{data_dir / 'store.sqlite3'}",
        data_dir=data_dir,
        host=host,
        port=port,
        bundle_keys=[release_key],
        mqtt_url=f"mqtt://{broker[0]}:{broker[1]}" if broker else None,
        mqtt_store="demo",
    )
    engine = make_engine(settings.database_url)
    migrate(engine)
    report = import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, "sample catalog")
    _demo_users(engine)
    key_id = store_key_id(settings)
    tokens = [_lane_token(engine, data_dir, f"lane-{n + 1}", key_id) for n in range(lanes)]
    engine.dispose()
    click.echo(f"Demo store ready in {data_dir}: {report.summary()}")
    with ExitStack() as running:
        store_url = running.enter_context(serve_in_thread(create_app(settings), host, port))
        started = [
            _start_lane(running, n, data_dir, host, port, store_url, fps, tokens[n], release_key)
            for n in range(lanes)
        ]
        click.echo("")
        click.echo(f"  Store console:      {store_url}/")
        click.echo(f"    sign in as        {DEMO_MANAGER[0]} / {DEMO_MANAGER[1]}  (store manager)")
        click.echo(f"                 or   {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}  (IT admin)")
        for n, (screen, _) in enumerate(started, start=1):
            click.echo(f"  Lane {n} screen:      {screen}")
        click.echo(f"  Metrics (Prometheus, from this computer): {store_url}/metrics")
        for n, (_, lane_url) in enumerate(started, start=1):
            click.echo(f"    lane {n}:           {lane_url}/metrics")
        if broker:
            click.echo(
                f"  MQTT events:        mosquitto_sub -h {broker[0]} -p {broker[1]} "
                "-t 'laneguard/demo/#' -q 1 -v"
            )
        else:
            click.echo(
                f"  MQTT events:        off (no broker at {DEMO_BROKER[0]}:{DEMO_BROKER[1]})"
            )
        click.echo("  Stop with Ctrl-C.")
        click.echo("")
        stopping = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a service manager
            signal.signal(signum, lambda *_: stopping.set())
        stopping.wait()
        click.echo("Stopping the demo store.")


def _demo_users(engine: Engine) -> None:
    """The demo's two console users (made once; a real store adds its own with add-user)."""
    from store_server.auth import UserAccountError, create_user

    for (username, password), role in ((DEMO_MANAGER, "manager"), (DEMO_ADMIN, "it_admin")):
        with contextlib.suppress(UserAccountError):  # already there from an earlier run
            create_user(engine, username, password, role)


def _release_key(data_dir: Path) -> Path:
    """The demo store's bundle signing key pair (made once): the store publishes and its lanes
    take only bundles signed with it, as in a real store. Returns the public key."""
    from laneguard.signing import new_keypair

    public = data_dir / "keys" / "release.pub"
    if not public.is_file():
        new_keypair(public.parent, "release")
    return public


def _lane_token(engine: Engine, data_dir: Path, lane_id: str, key_id: str) -> str | None:
    """An enrolment token for a demo lane that has no credential yet (zero-touch, as in a
    store); None when the lane enrolled in an earlier run."""
    from sqlmodel import Session

    from checkout_node.enrolment import load_credential
    from store_server.lanes import EnrolmentError, issue_enrolment_token, retire

    if load_credential(data_dir / lane_id) is not None:
        return None
    with Session(engine) as session, contextlib.suppress(EnrolmentError):
        retire(session, lane_id)  # enrolled before, but its lane folder was deleted
        session.commit()
    return issue_enrolment_token(engine, lane_id, f"Demo {lane_id}", "demo", store_key_id=key_id)


def _start_lane(
    running: ExitStack,
    n: int,
    data_dir: Path,
    host: str,
    port: int,
    store_url: str,
    fps: float,
    enrolment_token: str | None,
    release_key: Path,
) -> tuple[str, str]:
    """Lane n: its software on port+101+n, its simulated camera and till on port+91+n.
    Returns the address that signs its screen in (the kiosk's, with the lane's screen key) and
    the lane's own address."""
    from checkout_node.service import LaneService
    from checkout_node.settings import LaneSettings
    from simulator.feed import LiveFeed
    from simulator.world import World

    lane_port, feed_port = port + 101 + n, port + 91 + n
    lane_url = f"http://{host}:{lane_port}"
    photos = Path(os.environ.get("LANEGUARD_PRODUCE_PHOTOS", "../shared/data/grocery-produce"))
    world = World.from_catalog(produce_photos=photos if (photos / "images").is_dir() else None)
    feed = LiveFeed(world, "mixed", 100 + n, host, feed_port, fps, node_url=lane_url, loop=True)
    service = LaneService(
        LaneSettings(
            lane_id=f"lane-{n + 1}",
            camera=f"{feed.url}/stream.mjpg",
            server_url=store_url,
            enrolment_token=enrolment_token,
            data_dir=data_dir / f"lane-{n + 1}",
            http_host=host,
            http_port=lane_port,
            bundle_keys=[release_key],
        )
    )
    service.start()
    running.enter_context(serve_in_thread(service.app, host, lane_port))
    feed.start()

    def stop() -> None:  # the lane first, while its camera still streams; then the camera
        service.stop()
        feed.close()

    running.callback(stop)
    return f"{lane_url}/screen/session?key={service.access.screen_key}", lane_url


def _local_broker() -> tuple[str, int] | None:
    """The MQTT broker on this computer, if one answers (Mosquitto's default port)."""
    import socket

    try:
        with socket.create_connection(DEMO_BROKER, timeout=0.5):
            return DEMO_BROKER
    except OSError:
        return None
