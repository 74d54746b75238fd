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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from laneguard.serving import serve_in_thread

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hq_server.broker import BrokerFiles
    from hq_server.settings import HqSettings
    from store_server.settings import StoreSettings

DEMO_MANAGER = ("manager", "laneguard-demo")
DEMO_ADMIN = ("admin", "laneguard-admin")
DEMO_HQ_ADMIN = ("hq-admin", "laneguard-hq")
DEMO_BROKER = ("127.0.0.1", 1883)  # where `make demo` looks for an MQTT broker
# The chain demo (`laneguard demo --chain`): its stores, and where HQ, the broker and the
# second store listen relative to --port (each store's lanes sit at +91.. and +101.. of its own).
CHAIN_STORES = (("north", "Demo store North"), ("south", "Demo store South"))
STORE_PORT_STEP = 20
HQ_PORT_OFFSET = 200
BROKER_PORT_OFFSET = 222
DEMO_CUSTOMER_MASK = [(560.0, 0.0), (640.0, 0.0), (640.0, 480.0), (560.0, 480.0)]


def run_demo(data_dir: Path, host: str, port: int, lanes: int, fps: float) -> None:
    """Run the demo store and its simulated lanes; print the addresses to open."""
    broker = _local_broker()
    store = _prepare_store(data_dir, host, port, lanes, broker, "demo")
    with ExitStack() as running:
        store_url, started = _start_store(running, store, host, port, fps, threads_per_lane(lanes))
        click.echo("")
        _print_store("Store console:", store_url, started, broker, "demo")
        click.echo("  Stop with Ctrl-C.")
        click.echo("")
        _wait_for_stop()


def run_chain_demo(data_dir: Path, host: str, port: int, lanes: int, fps: float) -> None:
    """A chain on this computer: a NATS JetStream broker, HQ, and two stores enrolled with it,
    each with its own simulated lanes. What one store's lanes learn (a new product from its
    honest transactions) goes to HQ, which pools it and sends it to the other store."""
    from hq_server.app import create_app as create_hq
    from hq_server.db import migrate as migrate_hq
    from hq_server.settings import HqSettings
    from product_db.db import make_engine

    hq_port, broker_port = port + HQ_PORT_OFFSET, port + BROKER_PORT_OFFSET
    data_dir.mkdir(parents=True, exist_ok=True)
    mqtt = _local_broker()
    with ExitStack() as running:
        hq_settings = HqSettings(
            database_url=f"sqlite:///{data_dir / 'hq' / 'hq.sqlite3'}",
            data_dir=data_dir / "hq",
            host=host,
            port=hq_port,
            public_url=f"http://{host}:{hq_port}",
        )
        # The broker as a chain runs it: a credential per store, no anonymous clients, TLS.
        broker = _start_nats(running, hq_settings, data_dir / "nats", host, broker_port)
        nats_url = broker.url(host, broker_port)
        hq_settings = hq_settings.model_copy(
            update={"nats_url": nats_url, "nats_ca_file": broker.certificate}
        )
        hq_settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(hq_settings.database_url)
        migrate_hq(engine)
        _demo_users(engine, (DEMO_HQ_ADMIN,))
        engine.dispose()
        hq_url = running.enter_context(serve_in_thread(create_hq(hq_settings), host, hq_port))
        stores = []
        for n, (store_id, name) in enumerate(CHAIN_STORES):
            store_port = port + n * STORE_PORT_STEP
            store = _prepare_store(
                data_dir / store_id, host, store_port, lanes, mqtt, store_id, name, first_lane=n
            )
            # Each store's first lane sells the products the bundle has never seen, to honest
            # customers: each store learns them, and HQ sends each store's entries to the
            # other once both learned a product alike (one store alone would wait for a
            # person at HQ to confirm it).
            store.feed_kinds = ("new_product",)
            _enrol_with_demo_hq(store, hq_url, hq_settings.database_url, store_id, name)
            threads = threads_per_lane(lanes * len(CHAIN_STORES))
            stores.append((name, *_start_store(running, store, host, store_port, fps, threads)))
        click.echo("")
        click.echo(f"  HQ console:         {hq_url}/")
        click.echo(f"    sign in as        {DEMO_HQ_ADMIN[0]} / {DEMO_HQ_ADMIN[1]}  (chain IT)")
        click.echo("    Stores: each store's lanes and bundles, and the samples it pooled at HQ")
        click.echo(f"  Broker (NATS JetStream, TLS, a credential per store): {nats_url}")
        for name, store_url, started in stores:
            click.echo("")
            _print_store(f"{name}:", store_url, started, mqtt, None)
        click.echo("")
        click.echo("  North's lane 1 sells products the bundle has never seen to honest customers:")
        click.echo("  North learns them from its transactions and sends them to HQ, which passes")
        click.echo("  them on to South's lanes.")
        click.echo("  Stop with Ctrl-C.")
        click.echo("")
        _wait_for_stop()


@dataclass
class DemoStore:
    """A demo store's settings and what its lanes need to join it."""

    settings: StoreSettings
    tokens: list[str | None]  # per lane: an enrolment token, or None when enrolled before
    release_key: Path
    first_lane: int  # the simulated feed's seed offset: the stores' customers differ
    # What each lane's simulated customers do (simulator.scenario kinds); the rest "mixed".
    feed_kinds: tuple[str, ...] = ()


def _prepare_store(
    data_dir: Path,
    host: str,
    port: int,
    lanes: int,
    broker: tuple[str, int] | None,
    mqtt_store: str,
    store_name: str = "LaneGuard demo store",
    first_lane: int = 0,
) -> DemoStore:
    """The store's database (migrated, the sample catalog imported, the demo users) and one
    enrolment token per lane that has none yet."""
    from product_db import SAMPLE_CATALOG
    from product_db.catalog import import_records
    from product_db.catalog_io import read_catalog_file
    from product_db.db import make_engine
    from store_server.db import migrate
    from store_server.learning import store_key_id
    from store_server.settings import StoreSettings

    data_dir.mkdir(parents=True, exist_ok=True)
    release_key = _release_key(data_dir)
    settings = StoreSettings(
        database_url=f"sqlite:///{data_dir / 'store.sqlite3'}",
        data_dir=data_dir,
        host=host,
        port=port,
        store_name=store_name,
        bundle_keys=[release_key],
        mqtt_url=f"mqtt://{broker[0]}:{broker[1]}" if broker else None,
        mqtt_store=mqtt_store,
        # Lanes find their store by UDP broadcast on one port; two stores on one computer
        # would answer each other's lanes, and the demo's lanes are told the address anyway.
        discovery_port=0 if first_lane else 47800,
    )
    engine = make_engine(settings.database_url)
    migrate(engine)
    report = import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, "sample catalog")
    _demo_users(engine, (DEMO_MANAGER, DEMO_ADMIN))
    key_id = store_key_id(settings)
    tokens = [_lane_token(engine, data_dir, f"lane-{n + 1}", key_id) for n in range(lanes)]
    _product_pictures(engine, data_dir)
    engine.dispose()
    click.echo(f"{store_name} ready in {data_dir}: {report.summary()}")
    return DemoStore(settings, tokens, release_key, first_lane)


def _start_store(
    running: ExitStack, store: DemoStore, host: str, port: int, fps: float, threads: int
) -> tuple[str, list[tuple[str, str]]]:
    """Serve the store and start its lanes (``threads``: each lane's model threads); returns
    its address and each lane's (screen sign-in, own address)."""
    from store_server.served import serve_store

    # HTTPS as a store serves it: its own certificate, which its lanes pin through the store's
    # key (a browser asks once to accept it, or IT gives the server one: tls_cert).
    store_url = running.enter_context(serve_store(store.settings, host, port))
    started = [
        _start_lane(
            running,
            n,
            store.settings.data_dir,
            host,
            port,
            store_url,
            fps,
            threads,
            token,
            store.release_key,
            # The new-product lanes of both stores sell the same products (the same seed).
            seed=100 + n if kind_of(store, n) == "new_product" else 100 + 10 * store.first_lane + n,
            kind=kind_of(store, n),
        )
        for n, token in enumerate(store.tokens)
    ]
    return store_url, started


def threads_per_lane(lanes_on_this_computer: int) -> int:
    """Model threads for each of the demo's lanes, which all share this one computer: more
    threads than cores make onnxruntime's workers wait on each other, the lanes drop frames and
    miss items, and honest transactions (what the lanes learn from) become false alerts."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(1, lanes_on_this_computer))


def kind_of(store: DemoStore, n: int) -> str:
    """What lane ``n`` of ``store`` sells: its feed kind, else mixed baskets."""
    return store.feed_kinds[n] if n < len(store.feed_kinds) else "mixed"


def _print_store(
    title: str,
    store_url: str,
    started: list[tuple[str, str]],
    broker: tuple[str, int] | None,
    mqtt_store: str | None,
) -> None:
    click.echo(f"  {title:<20}{store_url}/")
    click.echo(f"    sign in as        {DEMO_MANAGER[0]} / {DEMO_MANAGER[1]}  (store manager)")
    click.echo(f"                 or   {DEMO_ADMIN[0]} / {DEMO_ADMIN[1]}  (IT admin)")
    for n, (screen, _) in enumerate(started, start=1):
        click.echo(f"  Lane {n} screen:      {screen}")
    click.echo(f"  Metrics (Prometheus, from this computer): {store_url}/metrics")
    for n, (_, lane_url) in enumerate(started, start=1):
        click.echo(f"    lane {n}:           {lane_url}/metrics")
    if mqtt_store is None:
        return
    if broker:
        click.echo(
            f"  MQTT events:        mosquitto_sub -h {broker[0]} -p {broker[1]} "
            f"-t 'laneguard/{mqtt_store}/#' -q 1 -v"
        )
    else:
        click.echo(f"  MQTT events:        off (no broker at {DEMO_BROKER[0]}:{DEMO_BROKER[1]})")


def _wait_for_stop() -> None:
    import signal
    import threading

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):  # Ctrl-C, or a service manager
        signal.signal(signum, lambda *_: stopping.set())
    stopping.wait()
    click.echo("Stopping the demo.")


def _enrol_with_demo_hq(
    store: DemoStore, hq_url: str, hq_database_url: str, store_id: str, name: str
) -> None:
    """Enrol the store with HQ the way a store's IT does (a one-time token from HQ), unless
    it enrolled in an earlier run."""
    from sqlmodel import Session

    from hq_server.stores import StoreEnrolmentError, add_store, retire_store
    from product_db.db import make_engine
    from store_server.chain_link import HqEnrolment, enrol_with_hq

    earlier = HqEnrolment.load(store.settings.data_dir)
    if earlier is not None and earlier.nats_jwt is not None:
        return  # enrolled before (without a broker credential: again, for one)
    engine = make_engine(hq_database_url)
    with Session(engine) as session:
        with contextlib.suppress(StoreEnrolmentError):
            retire_store(session, store_id, "demo")  # enrolled before, its folder deleted
            session.commit()
        token = add_store(session, store_id, name, "demo")
        session.commit()
    engine.dispose()
    enrol_with_hq(store.settings, hq_url, token)


def _start_nats(
    running: ExitStack, hq: HqSettings, folder: Path, host: str, port: int
) -> BrokerFiles:
    """The chain's NATS JetStream broker as `laneguard hq broker-config` configures it for
    ``hq`` (stores need the credential HQ signs them; TLS), storing in ``folder``; stopped
    with the demo."""
    import shutil
    import subprocess
    import time

    from hq_server.broker import write_broker_config

    binary = shutil.which("nats-server")
    if binary is None:
        raise click.ClickException(
            "the chain demo needs nats-server: install it with "
            "'sudo apt-get install nats-server' (or run 'make demo-chain', which does)"
        )
    if _answers((host, port)):
        raise click.ClickException(
            f"port {port} on {host} is taken (an earlier demo's nats-server?): stop it, or "
            "give the demo another --port"
        )
    files = write_broker_config(hq, folder, host, port)
    log = open(folder / "nats.log", "ab")  # noqa: SIM115 - open while the broker runs
    running.callback(log.close)
    process = subprocess.Popen(
        [binary, "-c", str(files.config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C stops the stores first; the broker goes last
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()

    running.callback(stop)
    deadline = time.monotonic() + 15
    while not _answers((host, port)) or process.poll() is not None:
        if process.poll() is not None or time.monotonic() > deadline:
            raise click.ClickException(
                f"nats-server did not start on {host}:{port} (port taken?): see {folder}/nats.log"
            )
        time.sleep(0.1)
    return files


def _demo_users(engine: Engine, users: tuple[tuple[str, str], ...]) -> None:
    """The demo's console users (made once; a real store adds its own with add-user): the
    manager signs in as a manager, everyone else as IT."""
    from store_server.auth import UserAccountError, create_user

    for username, password in users:
        role = "manager" if (username, password) == DEMO_MANAGER else "it_admin"
        with contextlib.suppress(UserAccountError):  # already there from an earlier run
            create_user(engine, username, password, role)


def _product_pictures(engine: Engine, data_dir: Path) -> None:
    """A reference picture of every catalog product that has none: the simulator's rendering
    of its pack, or a real photo of the produce (the store replaces them with crops from its
    own honest transactions as they come)."""
    from random import Random

    import cv2
    import numpy as np
    from sqlmodel import Session, select

    from simulator.world import World
    from store_server.media import MediaStore
    from store_server.models import ProductPicture
    from store_server.products import set_product_picture

    photos = Path(os.environ.get("LANEGUARD_PRODUCE_PHOTOS", "../shared/data/grocery-produce"))
    world = World.from_catalog(produce_photos=photos if (photos / "images").is_dir() else None)
    media = MediaStore(data_dir / "media")
    with Session(engine) as session:
        pictured = set(session.exec(select(ProductPicture.code)))
        for product in world.products:
            if product.code in pictured:
                continue
            sprite = world.sprite(product, 1, Random(product.code), splits=("test",))
            alpha = sprite.alpha[..., None].astype(np.float32) / 255
            card = sprite.bgr * alpha + np.full_like(sprite.bgr, 245) * (1 - alpha)
            ok, jpeg = cv2.imencode(".jpg", card.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 85])
            if ok:
                set_product_picture(session, media, product.code, jpeg.tobytes(), "simulator")
        session.commit()


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
    threads: int,
    enrolment_token: str | None,
    release_key: Path,
    seed: int,
    kind: str = "mixed",
) -> tuple[str, str]:
    """Lane n: its software on port+101+n, its simulated camera and till on port+91+n.
    Returns the address that signs its screen in (the kiosk's, with the lane's screen key) and
    the lane's own address."""
    from checkout_node.service import LaneService
    from checkout_node.settings import FrameSettings, LaneSettings, PrivacySettings
    from simulator.feed import LiveFeed
    from simulator.world import World

    lane_port, feed_port = port + 101 + n, port + 91 + n
    lane_url = f"http://{host}:{lane_port}"
    photos = Path(os.environ.get("LANEGUARD_PRODUCE_PHOTOS", "../shared/data/grocery-produce"))
    world = World.from_catalog(produce_photos=photos if (photos / "images").is_dir() else None)
    feed = LiveFeed(world, kind, seed, host, feed_port, fps, node_url=lane_url, loop=True)
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
            inference_threads=threads,
            # Camera frames for the detector to learn the lane: masked where the simulated
            # customer stands (the right edge) and faces blurred, as a store must.
            frames=FrameSettings(enabled=True),
            privacy=PrivacySettings(masks=[DEMO_CUSTOMER_MASK]),
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
    return DEMO_BROKER if _answers(DEMO_BROKER) else None


def _answers(address: tuple[str, int]) -> bool:
    import socket

    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False
