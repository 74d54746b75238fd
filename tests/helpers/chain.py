"""A chain on one computer for tests: a private NATS JetStream server (its own port and folder,
so a test may kill it), HQ and store servers enrolled with it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session

from hq_server.broker import write_broker_config
from hq_server.db import migrate as migrate_hq
from hq_server.settings import HqSettings
from hq_server.stores import add_store
from laneguard.serving import free_port
from product_db.db import make_engine
from store_server.chain_link import enrol_with_hq
from store_server.settings import StoreSettings


class NatsServer:
    """``nats-server -js`` on a free port, storing in ``folder``; ``kill`` is SIGKILL. With
    ``hq`` (HQ's settings) it runs as a chain's broker is run: the configuration `laneguard
    hq broker-config` writes (a credential per store, no anonymous clients, TLS)."""

    def __init__(self, folder: Path, hq: HqSettings | None = None) -> None:
        binary = shutil.which("nats-server")
        if binary is None:
            pytest.fail("nats-server is not installed (Debian package nats-server)")
        self.binary, self.folder, self.port = binary, folder, free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.files = write_broker_config(hq, folder, "127.0.0.1", self.port) if hq else None

    @property
    def url(self) -> str:
        return (
            self.files.url("127.0.0.1", self.port)
            if self.files
            else f"nats://127.0.0.1:{self.port}"
        )

    @property
    def ca_file(self) -> Path | None:
        return self.files.certificate if self.files else None

    def start(self) -> NatsServer:
        command = (
            [self.binary, "-c", str(self.files.config)]
            if self.files
            else [
                self.binary,
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.folder),
            ]
        )
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: _port_open(self.port), 10, "nats-server to listen")
        return self

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None

    def stop(self) -> None:
        self.kill()


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def store_token(hq_database_url: str, store_id: str) -> str:
    engine = make_engine(hq_database_url)
    migrate_hq(engine)
    with Session(engine) as session:
        token = add_store(session, store_id, f"Store {store_id}", "test")
        session.commit()
    engine.dispose()
    return token


@dataclass
class StoreSite:
    """A store's settings, enrolled with HQ (its server not yet started)."""

    store_id: str
    settings: StoreSettings

    @property
    def database_url(self) -> str:
        return self.settings.database_url


def enrolled_store(
    root: Path, hq_url: str, hq_database_url: str, store_id: str, **settings: Any
) -> StoreSite:
    folder = root / store_id
    folder.mkdir(parents=True, exist_ok=True)
    store = StoreSettings(
        database_url=f"sqlite:///{folder / 'store.sqlite3'}",
        data_dir=folder / "data",
        store_name=f"Store {store_id}",
        discovery_port=0,
        hq_status_s=1.0,
        hq_summary_s=1.0,
        **settings,
    )
    enrol_with_hq(store, hq_url, store_token(hq_database_url, store_id))
    return StoreSite(store_id, store)


def enrol_lane(base_url: str, database_url: str, lane_id: str) -> dict[str, Any]:
    from tests.helpers.live_server import enrolment_token

    reply = httpx.post(
        f"{base_url}/api/v1/enrol", json={"token": enrolment_token(database_url, lane_id)}
    )
    reply.raise_for_status()
    body: dict[str, Any] = reply.json()
    return body


def shifted_bundle(folder: Path, suffix: str = "-next") -> Path:
    """The shipped bundle under another version name (another release, the same models)."""
    import io
    import json
    import tarfile

    from laneguard.bundle import MANIFEST, SHIPPED_BUNDLE

    target = folder / f"shifted{suffix}.tar.gz"
    with tarfile.open(SHIPPED_BUNDLE, "r:gz") as source, tarfile.open(target, "w:gz") as out:
        for member in source.getmembers():
            handle = source.extractfile(member)
            data = handle.read() if handle else b""
            if member.name == MANIFEST:
                manifest = json.loads(data)
                manifest["version"] = f"{manifest['version']}{suffix}"
                data = json.dumps(manifest, indent=2).encode()
                member.size = len(data)
            out.addfile(member, io.BytesIO(data))
    return target


def hq_with_stores(
    database_url: str, media: Path, store_ids: tuple[str, ...] = ("A", "B")
) -> tuple[Any, Any, dict[str, Any]]:
    """HQ's database with ``store_ids`` enrolled, each with its own signing key, and HQ's
    intake over it: (engine, intake, store id -> key). For tests that hand HQ messages
    directly, without a broker."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from hq_server.intake import Intake
    from hq_server.outbox import HqOutbox
    from hq_server.stores import enrol_store, store_keys
    from laneguard.signing import public_pem
    from store_server.media import MediaStore

    engine = make_engine(database_url)
    migrate_hq(engine)
    keys = {s: Ed25519PrivateKey.generate() for s in store_ids}
    with Session(engine) as session:
        for store_id, key in keys.items():
            token = add_store(session, store_id, store_id, "test")
            enrol_store(session, token, store_id, public_pem(key))
        session.commit()
    for store_id in keys:
        store_keys.forget(store_id)
    outbox = HqOutbox(engine, Ed25519PrivateKey.generate())
    return engine, Intake(engine, MediaStore(media), outbox), keys
