"""Shared fixtures: real databases (a SQLite file and the PostgreSQL server on this machine)."""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, sync_playwright
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from laneguard.bundle import Manifest
from product_db.db import create_tables, make_engine
from tests.helpers.paths import REPO_ROOT

POSTGRES_URL = os.environ.get(
    "LANEGUARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _admin_engine() -> Engine:
    return make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a brand-new PostgreSQL database, dropped after the test."""
    name = f"lg_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - only when the server is down
        pytest.fail(
            f"PostgreSQL at {POSTGRES_URL} is not reachable ({exc}). Start it with "
            "'pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start' "
            "or point LANEGUARD_TEST_POSTGRES_URL at a server where we may create databases."
        )
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs twice: on a SQLite file, then on a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url`` with the catalog tables created."""
    eng = make_engine(database_url)
    create_tables(eng)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep what a person may want to look at afterwards (screenshots)."""
    path = REPO_ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def produce_photos() -> Path:
    """The real produce photos (never copied into the repo). Skips, saying why, when absent."""
    path = Path(
        os.environ.get("LANEGUARD_PRODUCE_PHOTOS", REPO_ROOT.parent / "shared/data/grocery-produce")
    )
    if not (path / "images").is_dir():
        pytest.skip(f"real produce photos not found at {path} (set LANEGUARD_PRODUCE_PHOTOS)")
    return path


@pytest.fixture(scope="session")
def real_scenes() -> Path:
    """The real cart and pile photos with their counts (never copied into the repo). Skips,
    saying why, when absent."""
    path = Path(
        os.environ.get("LANEGUARD_REAL_SCENES", REPO_ROOT.parent / "shared/data/real-scenes")
    )
    if not (path / "counts.csv").is_file():
        pytest.skip(f"real scene photos not found at {path} (set LANEGUARD_REAL_SCENES)")
    return path


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("chromium is not installed: run 'make test', which installs it with apt-get")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")


@contextmanager
def network_blocked() -> Iterator[list[str]]:
    """Make every non-loopback connection or name lookup fail, and record who tried."""
    attempts: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def guarded_connect(self: socket.socket, address: Any) -> Any:
        host = str(address[0] if isinstance(address, tuple) else address)
        if self.family in (socket.AF_INET, socket.AF_INET6) and not host.startswith(LOOPBACK):
            attempts.append(f"connect {address}")
            raise OSError("network disabled in this test")
        return real_connect(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not str(host).startswith(LOOPBACK):
            attempts.append(f"resolve {host}")
            raise socket.gaierror("network disabled in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", guarded_connect)
    patch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    try:
        yield attempts
    finally:
        patch.undo()


@pytest.fixture(scope="session")
def quick_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest, list[str]]:
    """One tiny bootstrap run (with training weights) for the session, network cut off."""
    from trainer.bootstrap import BootstrapConfig, run_bootstrap

    work = tmp_path_factory.mktemp("bootstrap")
    lines: list[str] = []
    with network_blocked() as attempts:
        manifest = run_bootstrap(
            # With the lane's verifier, so the slow path's candidates are seen to carry it on.
            BootstrapConfig.quick(product_verifier=True),
            work / "work",
            work / "quick.tar.gz",
            progress=lines.append,
        )
    assert not attempts, f"training or export reached for the network: {attempts}"
    return work / "quick.tar.gz", manifest, lines


@pytest.fixture(scope="session")
def quick_teacher(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """One tiny teacher run (Lite0 at 96, one epoch) for the session, network cut off."""
    from trainer.teacher import TeacherConfig, run_teacher

    work = tmp_path_factory.mktemp("teacher")
    with network_blocked() as attempts:
        manifest = run_teacher(
            TeacherConfig.quick(), work / "work", work / "teacher.tar.gz", progress=lambda _: None
        )
    assert not attempts, f"training or export reached for the network: {attempts}"
    return work / "teacher.tar.gz", manifest
