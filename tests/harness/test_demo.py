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
from sqlmodel import Session, select

from product_db.db import make_engine
from store_server.models import LaneHealth
from tests.helpers.live_server import free_port


def _demo_ports() -> int:
    """A store port whose lane ports (port+91 camera, port+101 lane, for lane 1) are free too:
    the demo lays its lanes out from the store's port, and an ephemeral port picked alone left
    the lane's taken by another process once."""
    for _ in range(50):
        port = free_port()
        if port + 101 > 65535:
            continue
        sockets = []
        try:
            for offset in (91, 101):
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
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        assert httpx.get(lane_url + "/").status_code == 401, "the screen needs its key"
        key = (tmp_path / "lane-1" / "screen-key").read_text().strip()
        with httpx.Client(base_url=lane_url, follow_redirects=True) as kiosk:
            screen = kiosk.get(f"/screen/session?key={key}")
            assert screen.status_code == 200 and "Please scan this item" in screen.text
            state = kiosk.get("/api/state").json()
        assert state["lane_id"] == "lane-1" and state["model_version"].startswith("bootstrap")
        for url in (f"http://127.0.0.1:{port}", lane_url):  # scraped from this computer
            metrics = httpx.get(f"{url}/metrics")
            assert metrics.status_code == 200 and "laneguard_" in metrics.text
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert f"Store console:      http://127.0.0.1:{port}/" in output
    assert f"Lane 1 screen:      {lane_url}/screen/session?key={key}" in output
    assert f"    lane 1:           {lane_url}/metrics" in output
    assert (
        "mosquitto_sub -h 127.0.0.1 -p 1883 -t 'laneguard/demo/#'" in output
    )  # Mosquitto runs here
