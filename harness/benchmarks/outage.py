"""The store server goes away for a while in the middle of a run: does the lane lose anything?

A real lane (reconciliation, outbox, uploader) checks out ``transactions`` customers at a steady
pace against a real store server (SQLite); every 10th customer skips a scan, so alerts with
evidence travel too, and every honest transaction sends its crops. The server is stopped for
``outage_s`` seconds part-way and started again on the same address and database. Counted at
the end, in the store's database: every transaction and alert exactly once.
"""

from __future__ import annotations

import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlmodel import Session, func, select

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.model_bundle import load_models
from checkout_node.outbox import Outbox
from checkout_node.reconcile.model import Scan, SeenItem
from checkout_node.uploader import Enrolment, Uploader
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from laneguard.bundle import SHIPPED_BUNDLE
from laneguard.serving import free_port, serve_in_thread
from laneguard.wire import PosMessage
from product_db.db import make_engine


def _crop(seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (96, 80, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _customer(lane: Lane, n: int, t: float, products: list[Any]) -> int:
    """Three items; every 10th customer's last item goes unscanned. Returns alerts expected."""
    lane.on_input(
        PosMessage(type="transaction_start", event_id=f"p{n}", t=t, transaction_id=f"tx-{n}")
    )
    skip = n % 10 == 0
    for k in range(3):
        product = products[(n * 3 + k) % len(products)]
        if not (skip and k == 2):
            lane.add_scan(Scan.of(product.display_code, t + k * 0.6, event_id=f"s{n}-{k}"))
        lane.add_item(
            SeenItem(
                k + 1, t + k * 0.6 + 0.4, t + k * 0.6 - 1.0, product.code, "trusted", 0.98,
                ((product.code, 0.98),), _crop(n * 3 + k), (10, 10, 90, 100),
            )
        )  # fmt: skip
    lane.end_transaction(t + 2.5, reason="transaction_end")
    return int(skip)


class _BacklogWatch:
    """Seconds from the server's return until the outbox holds no more than one customer's
    messages (the backlog of the outage delivered)."""

    def __init__(self, outbox: Outbox, since: float, steady: int = 5) -> None:
        self.outbox, self.since, self.steady = outbox, since, steady
        self.cleared: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            if sum(self.outbox.depth().values()) <= self.steady:
                self.cleared = time.monotonic() - self.since
                return

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.cleared is None and sum(self.outbox.depth().values()) <= self.steady:
            self.cleared = time.monotonic() - self.since
        return None if self.cleared is None else round(self.cleared, 1)


class _StoreServer:
    """The store server, stopped and started again on the same port and database."""

    def __init__(self, app_factory: Any, port: int) -> None:
        self.app_factory, self.port = app_factory, port
        self._stack: ExitStack | None = None

    def start(self) -> None:
        self._stack = ExitStack()
        self._stack.enter_context(serve_in_thread(self.app_factory(), port=self.port))

    def stop(self) -> None:
        if self._stack is not None:
            self._stack.close()
            self._stack = None


def run(
    transactions: int = 200, outage_s: float = 600.0, pace_s: float | None = None
) -> dict[str, Any]:
    from store_server.app import create_app
    from store_server.db import migrate
    from store_server.lanes import issue_enrolment_token
    from store_server.models import AlertRecord, SampleRecord, TransactionRecord
    from store_server.settings import StoreSettings

    pace = pace_s if pace_s is not None else max(0.02, 1.4 * outage_s / transactions)
    outage_starts = int(transactions * 0.2)
    models = load_models(SHIPPED_BUNDLE)
    catalog = LaneCatalog.from_file()
    products = [p for p in catalog.products.values() if p.code_kind != "plu"]
    with tempfile.TemporaryDirectory(prefix="laneguard-outage-") as tmp:
        root = Path(tmp)
        database_url = f"sqlite:///{root / 'store.sqlite3'}"
        settings = StoreSettings(database_url=database_url, data_dir=root / "store")
        port = free_port()
        outbox = Outbox(root / "lane" / "outbox.sqlite3")
        lane = Lane("lane-bench", LanePipeline(models, LaneZones.standard()), catalog, outbox)
        engine = make_engine(database_url)
        migrate(engine)
        token = issue_enrolment_token(engine, "lane-bench", created_by="bench")
        engine.dispose()
        enrolment = Enrolment(token, root / "lane", "lane-bench")
        uploader = Uploader(outbox, f"http://127.0.0.1:{port}", timeout_s=5.0, enrolment=enrolment)
        uploader.start()
        expected_alerts = 0
        max_depth = 0
        started = time.monotonic()
        down_at = up_at = 0.0
        server = _StoreServer(lambda: create_app(settings), port)
        server.start()
        for n in range(transactions):
            if n == outage_starts:
                server.stop()
                down_at = time.monotonic()
            if down_at and not up_at and time.monotonic() - down_at >= outage_s:
                server.start()
                up_at = time.monotonic()
                watcher = _BacklogWatch(outbox, up_at)
            expected_alerts += _customer(lane, n, 10.0 * n, products)
            max_depth = max(max_depth, sum(outbox.depth().values()))
            time.sleep(pace)
        if not up_at:  # the run was shorter than the outage: wait it out
            time.sleep(max(0.0, outage_s - (time.monotonic() - down_at)))
            server.start()
            up_at = time.monotonic()
            watcher = _BacklogWatch(outbox, up_at)
        while any(outbox.depth().values()) and time.monotonic() - up_at < 600:
            time.sleep(0.1)
        drained_s = time.monotonic() - up_at
        backlog_s = watcher.stop()
        uploader.stop()
        engine = make_engine(database_url)
        with Session(engine) as session:
            stored = {
                table.__name__: int(session.exec(select(func.count()).select_from(table)).one())
                for table in (TransactionRecord, AlertRecord, SampleRecord)
            }
        engine.dispose()
        server.stop()
        dead = outbox.dead_letters()
        outbox.close()
    return {
        "transactions": transactions,
        "outage_s": round(up_at - down_at, 1),
        "run_s": round(time.monotonic() - started, 1),
        "expected": {"transactions": transactions, "alerts": expected_alerts},
        "stored": stored,
        "lost_transactions": transactions - stored["TransactionRecord"],
        "lost_alerts": expected_alerts - stored["AlertRecord"],
        "dead_letters": len(dead),
        "max_outbox_depth": max_depth,
        "backlog_delivered_after_return_s": backlog_s,
        "drained_after_return_s": round(drained_s, 1),
    }
