"""A whole lane (`node run`'s service) on the simulator's live camera feed and till, delivering
to a real store server; and the scan inputs: a serial scanner on a pseudo-terminal, a
keyboard-wedge scanner's key events, a camera imager reading rendered barcodes."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from evdev import ecodes
from sqlmodel import Session, select

from checkout_node.reconcile.model import Scan
from checkout_node.scanners.decode import KeystrokeDecoder, LineDecoder
from checkout_node.scanners.readers import ImagerScanner, SerialScanner, decode_barcodes
from checkout_node.service import LaneService
from checkout_node.settings import LaneSettings
from product_db.codes import GTIN
from product_db.db import make_engine
from simulator.barcode import render_barcode
from simulator.feed import LiveFeed
from simulator.scenario import build_scenario
from simulator.world import World
from store_server.learning import store_key_id
from store_server.models import AlertRecord, TransactionRecord
from store_server.served import serve_store
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrolment_token, free_port, serve
from tests.helpers.paths import REPO_ROOT


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    settings = StoreSettings(database_url=url, data_dir=tmp_path / "store")
    with serve_store(settings) as base:  # HTTPS, as a store serves its lanes
        yield base, url, store_key_id(settings)


@pytest.mark.timeout(240)
def test_lane_on_the_live_feed_alerts_and_delivers_to_the_store(
    store: tuple[str, str, str], tmp_path: Path
) -> None:
    store_url, database_url, store_key = store
    assert store_url.startswith("https://")
    world = World.from_catalog()
    scenario = build_scenario("skip_scan", 3, world, fps=15.0)
    lane_port = free_port()
    feed = LiveFeed(
        world, "skip_scan", 3, port=free_port(), fps=15.0, node_url=f"http://127.0.0.1:{lane_port}"
    )
    settings = LaneSettings(
        lane_id="lane-5",
        camera=f"{feed.url}/stream.mjpg",
        server_url=store_url,
        # Zero-touch: the token names the store's key, which vouches for its certificate.
        enrolment_token=enrolment_token(database_url, "lane-5", store_key),
        data_dir=tmp_path / "lane",
        http_port=lane_port,
        heartbeat_s=1.0,
    )
    service = LaneService(settings)
    service.start()
    try:
        with serve(service.app, port=lane_port):
            feed.start()
            assert feed.wait(timeout=180)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (
                service.lane.transaction is not None or any(service.outbox.depth().values())
            ):
                time.sleep(0.2)
    finally:
        feed.close()
        service.stop()
    assert feed.state.events_failed == 0
    engine = make_engine(database_url)
    with Session(engine) as session:
        transactions = session.exec(select(TransactionRecord)).all()
        alerts = session.exec(select(AlertRecord)).all()
    engine.dispose()
    assert [t.transaction_id for t in transactions] == ["sim-skip_scan-3"]
    assert transactions[0].n_scanned == len(scenario.scans)
    skipped = next(a for a in scenario.items if a.behaviour == "skip_scan")
    unscanned = [a for a in alerts if a.alert_type == "unscanned_item"]
    assert unscanned, "the skipped item raised an alert at the store"
    assert all(a.evidence for a in unscanned)
    assert transactions[0].honest is False and skipped.code is not None


def test_serial_scanner_on_a_pseudo_terminal() -> None:
    controller, device = os.openpty()
    received: list[Scan] = []
    got = threading.Event()

    def on_scan(scan: Scan) -> None:
        received.append(scan)
        if len(received) == 3:
            got.set()

    scanner = SerialScanner(os.ttyname(device), on_scan, clock=lambda: 12.5)
    scanner.start()
    try:
        deadline = time.monotonic() + 10
        while not scanner.connected and time.monotonic() < deadline:  # port open, raw mode set
            time.sleep(0.02)
        time.sleep(0.1)
        os.write(controller, b"4006381333931\r\n4011\r")  # CRLF and CR line ends
        os.write(controller, b"12345\n")  # 5 digits: a PLU form, organic prefix wrong -> invalid
        assert got.wait(10)
    finally:
        scanner.stop()
        os.close(controller)
        os.close(device)
    assert [s.raw_code for s in received] == ["4006381333931", "4011", "12345"]
    assert received[0].key == "04006381333931" and received[1].key == "4011"
    assert received[2].key is None and received[2].error
    assert all(s.t == 12.5 and s.source == "scanner" for s in received)


def test_line_decoder_drops_floods_without_a_terminator() -> None:
    decoder = LineDecoder()
    assert list(decoder.feed(b"40063813")) == []
    assert list(decoder.feed(b"33931\r\n\r\n")) == ["4006381333931"]
    assert list(decoder.feed(b"9" * 200 + b"4011\n4011\n")) == ["4011"]  # noise line skipped


def test_keyboard_wedge_key_events_become_codes() -> None:
    decoder = KeystrokeDecoder()
    codes = []
    for char in "4006381333931":
        key = getattr(ecodes, f"KEY_{char}")
        codes.append(decoder.feed(ecodes.EV_KEY, key, 1))  # down
        codes.append(decoder.feed(ecodes.EV_KEY, key, 0))  # up: ignored
        codes.append(decoder.feed(ecodes.EV_SYN, 0, 0))
    codes.append(decoder.feed(ecodes.EV_KEY, ecodes.KEY_ENTER, 1))
    assert [c for c in codes if c] == ["4006381333931"]
    assert decoder.feed(ecodes.EV_KEY, ecodes.KEY_KPENTER, 1) is None  # empty line: nothing


def test_imager_reads_rendered_barcodes_once_per_pass() -> None:
    gtin = GTIN.parse("4006381333931")
    bars = render_barcode(gtin, module_px=3)
    frame = np.full((480, 640, 3), 200, np.uint8)
    bars_bgr = cv2.cvtColor(bars, cv2.COLOR_GRAY2BGR) if bars.ndim == 2 else bars
    h, w = bars_bgr.shape[:2]
    frame[100 : 100 + h, 100 : 100 + w] = bars_bgr
    frame = cv2.GaussianBlur(frame, (3, 3), 0)
    assert decode_barcodes(frame) == ["4006381333931"]
    imager = ImagerScanner("0", lambda _s: None, clock=lambda: 0.0)
    assert imager.new_codes(["4006381333931"], now=10.0) == ["4006381333931"]
    assert imager.new_codes(["4006381333931"], now=10.5) == []  # still on the glass
    assert imager.new_codes([], now=11.0) == []
    assert imager.new_codes(["4006381333931"], now=12.2) == ["4006381333931"]  # a new pass


def test_the_example_lane_config_is_valid() -> None:
    from laneguard.settings import load_settings

    settings = load_settings(LaneSettings, REPO_ROOT / "hardware/lane.example.yaml")
    assert [s.type for s in settings.scanners] == ["serial", "hid", "imager"]
    assert settings.zones is not None and len(settings.zones.scan_area) == 4
