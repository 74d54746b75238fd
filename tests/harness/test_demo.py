"""`laneguard demo` (what `make demo` runs): the store and a simulated lane come up, the lane
screen answers and the store hears from the lane."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, func, select

from laneguard.tls import pinned_context
from product_db.db import make_engine
from product_db.models import Product
from store_server.models import DetectionFrame, GalleryEntry, LaneHealth, ProductPicture
from store_server.products import describe
from tests.helpers.live_server import free_port


def _demo_ports(offsets: tuple[int, ...] = (91, 101)) -> int:
    """A store port whose lane ports (port+91 camera, port+101 lane, for lane 1) are free too:
    the demo lays its lanes out from the store's port, and an ephemeral port picked alone left
    the lane's taken by another process once."""
    for _ in range(50):
        port = free_port()
        if port + max(offsets) > 65535:
            continue
        sockets = []
        try:
            for offset in offsets:
                probe = socket.socket()
                sockets.append(probe)
                probe.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for probe in sockets:
                probe.close()
    raise AssertionError("no free block of ports for the demo")


def test_demo_runs_a_store_and_a_lane_that_reports_to_it(tmp_path: Path) -> None:
    port = _demo_ports()
    env = {**os.environ, "LANEGUARD_PRODUCE_PHOTOS": str(tmp_path / "none")}
    process = subprocess.Popen(
        [sys.executable, "-m", "laneguard.cli", "demo", "--data-dir", str(tmp_path),
         "--port", str(port), "--lanes", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        lane_url = f"http://127.0.0.1:{port + 101}"
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and health is None:
            time.sleep(1)
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            if (tmp_path / "store.sqlite3").exists():
                engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
                with Session(engine) as session, contextlib.suppress(OperationalError):
                    health = session.exec(select(LaneHealth)).first()  # tables may be coming
                engine.dispose()
        assert health is not None and health.lane_id == "lane-1" and health.camera == "up"
        engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
        with Session(engine) as session:  # every product has a reference picture from day one
            products = session.exec(select(func.count()).select_from(Product)).one()
            pictured = session.exec(select(ProductPicture)).all()
            views = describe(session, ["4011"])
        engine.dispose()
        assert len(pictured) == products > 0
        assert {p.source for p in pictured} == {"simulator"}
        assert views["4011"].reference_image == next(p.image for p in pictured if p.code == "4011")
        picture = tmp_path / "media" / pictured[0].image[:2] / pictured[0].image
        assert picture.read_bytes()[:3] == b"\xff\xd8\xff" and picture.stat().st_mode & 0o077 == 0
        # The store serves HTTPS with its own certificate, and the lane pinned that one.
        certificate = (tmp_path / "keys" / "tls.crt").read_text()
        assert (tmp_path / "lane-1" / "store-certificate.pem").read_text() == certificate
        store = httpx.Client(
            base_url=f"https://127.0.0.1:{port}", verify=pinned_context(certificate)
        )
        assert store.get("/healthz").status_code == 200
        assert httpx.get(lane_url + "/").status_code == 401, "the screen needs its key"
        key = (tmp_path / "lane-1" / "screen-key").read_text().strip()
        with httpx.Client(base_url=lane_url, follow_redirects=True) as kiosk:
            screen = kiosk.get(f"/screen/session?key={key}")
            assert screen.status_code == 200 and "Please scan this item" in screen.text
            state = kiosk.get("/api/state").json()
        assert state["lane_id"] == "lane-1" and state["model_version"].startswith("bootstrap")
        for client in (store, httpx.Client(base_url=lane_url)):  # scraped from this computer
            metrics = client.get("/metrics")
            assert metrics.status_code == 200 and "laneguard_" in metrics.text
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert f"Store console:      https://127.0.0.1:{port}/" in output
    assert f"Lane 1 screen:      {lane_url}/screen/session?key={key}" in output
    assert f"    lane 1:           {lane_url}/metrics" in output
    assert (
        "mosquitto_sub -h 127.0.0.1 -p 1883 -t 'laneguard/demo/#'" in output
    )  # Mosquitto runs here


def test_the_chain_demo_runs_hq_and_two_stores_that_report_to_it(tmp_path: Path) -> None:
    """`laneguard demo --chain`: HQ, a NATS JetStream broker and two stores enrolled with HQ,
    each with a lane; HQ's console signs its IT in and lists both stores with their lane."""
    import re

    from hq_server.models import StoreStatus

    # North at port (lane +91/+101), South at port+20 (+111/+121), HQ +200, broker +222.
    port = _demo_ports((20, 91, 101, 111, 121, 200, 222))
    env = {**os.environ, "LANEGUARD_PRODUCE_PHOTOS": str(tmp_path / "none")}
    process = subprocess.Popen(
        [sys.executable, "-m", "laneguard.cli", "demo", "--chain", "--data-dir", str(tmp_path),
         "--port", str(port), "--lanes", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    hq_url = f"http://127.0.0.1:{port + 200}"
    try:
        deadline = time.monotonic() + 150
        reported: set[str] = set()
        while time.monotonic() < deadline and reported != {"north", "south"}:
            time.sleep(1)
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            if (tmp_path / "hq" / "hq.sqlite3").exists():
                engine = make_engine(f"sqlite:///{tmp_path / 'hq' / 'hq.sqlite3'}")
                with Session(engine) as session, contextlib.suppress(OperationalError):
                    statuses = session.exec(select(StoreStatus)).all()
                    reported = {s.store_id for s in statuses if s.lanes}
                engine.dispose()
        assert reported == {"north", "south"}, "both stores report their lanes to HQ"
        # Both stores' first lanes sell products the bundle never saw: each learns them from
        # its honest transactions, and HQ sends North's to South once South learned them
        # alike (one store's entries alone wait for a person at HQ).
        learned_from_north: list[str] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not learned_from_north:
            time.sleep(2)
            assert process.poll() is None, process.stdout.read() if process.stdout else ""
            engine = make_engine(f"sqlite:///{tmp_path / 'south' / 'store.sqlite3'}")
            with Session(engine) as session, contextlib.suppress(OperationalError):
                learned_from_north = list(
                    session.exec(
                        select(GalleryEntry.code).where(GalleryEntry.origin_store == "north")
                    )
                )
            engine.dispose()
        assert learned_from_north, "what North learned reached South through HQ"
        # The lanes' honest checkouts also sent camera frames with labelled boxes (issue #35).
        engine = make_engine(f"sqlite:///{tmp_path / 'north' / 'store.sqlite3'}")
        with Session(engine) as session:
            frames = session.exec(select(DetectionFrame)).all()
        engine.dispose()
        honest = [f for f in frames if f.reason == "honest"]
        assert honest and all(f.boxes for f in honest)
        stored = tmp_path / "north" / "media" / honest[0].image[:2] / honest[0].image
        assert stored.read_bytes()[:3] == b"\xff\xd8\xff" and stored.stat().st_mode & 0o077 == 0
        with httpx.Client(base_url=hq_url, timeout=10) as it:
            form = it.get("/login")
            token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
            assert token is not None
            signed_in = it.post(
                "/login",
                data={"username": "hq-admin", "password": "laneguard-hq",
                      "login_csrf": token.group(1)},
            )  # fmt: skip
            assert signed_in.status_code == 303
            stores = it.get("/stores").text
        assert 'data-store="north"' in stores and 'data-store="south"' in stores
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
    assert f"HQ console:         {hq_url}/" in output
    assert "hq-admin / laneguard-hq" in output
    assert f"Demo store North:   https://127.0.0.1:{port}/" in output
    assert f"Demo store South:   https://127.0.0.1:{port + 20}/" in output
    assert process.returncode == 0, output
