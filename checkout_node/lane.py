"""One checkout lane at work: camera frames and till events in, alerts and records out.

    frames ──► LanePipeline ──► counted items ─┐
    scans / POS events (HTTP, websocket, serial, HID, imager) ──► TransactionReconciler
                                                   │
           alerts, seen and scanned lists ◄────────┤──► lane screen (websocket)
           transactions, alerts, samples ◄─────────┘──► outbox ──► store server

A transaction runs from the till's "transaction_start" to its "transaction_end" (checked before
"payment"), or, with no till integration, from the first item or scan to an idle gap. Every call
may come from a different thread (the camera loop, the web server, scanner readers); one lock
keeps the transaction consistent.

``Lane`` coordinates: it routes frames and till events to the transaction's reconciler and its
results to the pieces that each do one job: ``screen_view`` (what the cashier's screen is
sent), ``lane_records`` (what goes to the store through the outbox), ``evidence_cache`` (the
crops and clips the screen may fetch), and the swap to a new bundle or gallery between
transactions.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from checkout_node.catalog import LaneCatalog
from checkout_node.clips import Clip, ClipRecorder
from checkout_node.evidence_cache import EvidenceCache
from checkout_node.frame_keeper import FrameKeeper
from checkout_node.lane_records import LaneRecords
from checkout_node.messages import StreamClock
from checkout_node.outbox import Outbox
from checkout_node.pick_lists import OpenList, OpenPickLists, PickListError, Reply
from checkout_node.picklist import SalesPrior, pick_list
from checkout_node.reconcile.model import Alert, AlertChange, Scan, SeenItem
from checkout_node.reconcile.reconciler import (
    Outcome,
    ReconcileConfig,
    ReconcileError,
    TransactionReconciler,
)
from checkout_node.screen_view import ScreenView
from checkout_node.vision.pipeline import FrameResult, LanePipeline, encode_crop
from laneguard.gallery import Gallery
from laneguard.wire import PosMessage, ScanMessage
from product_db.codes import is_plu

log = logging.getLogger("laneguard.node.lane")

Publish = Callable[[dict[str, Any]], None]


@dataclass
class BundleHealth:
    """What the running bundle has done since it went live (a staged rollout judges by it)."""

    frame_errors: int = 0
    alerts_raised: int = 0
    transactions: int = 0


@dataclass
class LaneCounters:
    """What the lane has done since it started, across bundle swaps (its /metrics)."""

    frames: int = 0
    errors: int = 0
    tracks: int = 0  # objects tracked in the last frame
    items: int = 0
    transactions: int = 0
    alerts_by_type: dict[str, int] = field(default_factory=dict)
    pick_lists: int = 0  # produce pick lists shown
    picks: int = 0  # ... and answered by a tap


class Lane:
    """One lane's coordinator: frames and till events in; the transaction, the screen's events
    and the outbox's records out. Thread-safe (one re-entrant lock)."""

    def __init__(
        self,
        lane_id: str,
        pipeline: LanePipeline,
        catalog: LaneCatalog,
        outbox: Outbox,
        publish: Publish | None = None,
        reconcile: ReconcileConfig | None = None,
        idle_gap_s: float = 20.0,
        customer_prompt_s: float = 0.0,
        clock: StreamClock | None = None,
        clips: ClipRecorder | None = None,
        frames: FrameKeeper | None = None,
    ) -> None:
        self.lane_id = lane_id
        self.pipeline = pipeline
        self.catalog = catalog
        self.outbox = outbox
        self.publish: Publish = publish or (lambda _event: None)
        self.reconcile_config = reconcile or ReconcileConfig()
        self.idle_gap_s = idle_gap_s
        self.clock = clock or StreamClock.now()
        self.records = LaneRecords(lane_id, outbox, self.clock)
        self.evidence = EvidenceCache()  # this and recent transactions' crops and clips
        self.view = ScreenView(catalog, self.evidence, customer_prompt_s)
        self.pick_lists = OpenPickLists()
        # PLUs the screen offered for this transaction: keying one is never a switch (the
        # reconciler is given this set when the transaction starts).
        self.offered_plus: set[str] = set()
        # The PLUs this lane has sold since it started, weighing its pick lists (flat at first).
        self.plu_sales: dict[str, int] = {}
        thresholds = pipeline.models.manifest.thresholds
        self.t1, self.t2 = thresholds.t1, thresholds.t2
        self.model_version = pipeline.models.manifest.version
        self.transaction: TransactionReconciler | None = None
        self.last_outcome: Outcome | None = None
        # Ended transactions whose alerts may still be open on the screen: the final check runs
        # before payment, and what it raises stays until the cashier resolves it.
        self.ended: list[TransactionReconciler] = []
        self.pos_driven = False  # the till told us where this transaction started
        self.last_activity_s = 0.0
        self.last_frame_s = 0.0
        self.clips = clips
        self.frames = frames  # detection frames for the detector to learn this camera
        if clips is not None:
            clips.on_clip = self.clip_ready
        self.finished: list[dict[str, Any]] = []  # summaries of recent transactions
        self._lock = threading.RLock()
        self._started = time.monotonic()
        self.health = BundleHealth()
        self.counters = LaneCounters()
        # Called with every frame's result after the lane has taken it (metrics histograms).
        self.frame_observers: list[Callable[[FrameResult], None]] = []
        # A new bundle's pipeline waiting for the transaction to end, and who to tell.
        self._next_pipeline: tuple[LanePipeline, Callable[[], None]] | None = None
        self._next_gallery: Gallery | None = None
        # The pipeline a frame is going through outside the lock: it is not closed or
        # swapped until that frame is in (the camera thread swaps before its next frame).
        self._frame_pipeline: LanePipeline | None = None

    # -- clock ------------------------------------------------------------------------------
    def now_s(self) -> float:
        """Seconds on the lane's stream clock (for events that carry no time of their own)."""
        return time.monotonic() - self._started

    # -- inputs -----------------------------------------------------------------------------
    def stage_gallery(self, gallery: Gallery) -> None:
        """A newer gallery (learned entries from the store): used from the next transaction,
        so one transaction's items are all identified against the same references."""
        with self._lock:
            self._next_gallery = gallery
            self._switch_gallery()

    def stage_pipeline(self, pipeline: LanePipeline, on_live: Callable[[], None]) -> None:
        """A new bundle's pipeline: it goes live between transactions, never during one, so a
        transaction's items are all seen by one model. ``on_live`` runs once it has."""
        with self._lock:
            self._next_pipeline = (pipeline, on_live)
            self._switch_pipeline()

    def _switch_pipeline(self) -> None:
        if self._next_pipeline is None or self.transaction is not None:
            return
        if self._frame_pipeline is not None:  # a frame is in it: after that frame
            return
        if self.pipeline.identifying:  # an item counted, not yet out: it opens a transaction
            return
        pipeline, on_live = self._next_pipeline
        self._next_pipeline = None
        self._next_gallery = None  # made for the old bundle
        self.pipeline.close()
        self.pipeline = pipeline
        thresholds = pipeline.models.manifest.thresholds
        self.t1, self.t2 = thresholds.t1, thresholds.t2
        self.model_version = pipeline.models.manifest.version
        self.health = BundleHealth()
        on_live()

    def frame_failed(self) -> None:
        with self._lock:
            self.health.frame_errors += 1
            self.counters.errors += 1

    def _switch_gallery(self) -> None:
        if self._frame_pipeline is not None:  # a frame is being identified: after it
            return
        if self._next_gallery is not None and self.transaction is None:
            self.pipeline.recogniser.gallery = self._next_gallery
            self._next_gallery = None

    @property
    def gallery_version(self) -> str:
        return self.pipeline.recogniser.gallery.version

    def process_frame(self, image: np.ndarray, t: float) -> FrameResult:
        with self._lock:
            if self._next_pipeline is not None or self._next_gallery is not None:
                self._switch_pipeline()
                self._switch_gallery()
            pipeline = self._frame_pipeline = self.pipeline
        try:
            # Outside the lock (the till and the screen go on meanwhile); a bundle or gallery
            # staged now waits for this frame, so its items are counted by what saw them.
            result = pipeline.process(image, t)
            if self.clips is not None:
                self.clips.add_frame(image, t, ((k.track_id, k.box) for k in result.products))
            if self.frames is not None:
                self.frames.observe(image, result)
        except BaseException:
            with self._lock:
                self._frame_pipeline = None
            raise
        with self._lock:
            self._frame_pipeline = None
            self.last_frame_s = t
            self.counters.frames += 1
            self.counters.tracks = len(result.products) + sum(map(len, result.others.values()))
            for counted in result.counted:
                self.add_item(SeenItem.from_counted(counted))
            if result.lost and self.transaction is not None:
                for lost in result.lost:
                    self._changes(self.transaction.add_lost(lost.last_s))
            self.tick(t)
        for observe in self.frame_observers:
            observe(result)
        return result

    def add_item(self, item: SeenItem) -> None:
        with self._lock:
            self.counters.items += 1
            tx = self._transaction(item.crossed_s)
            changes = tx.add_item(item)
            for change in changes:
                if change.alert.track_id == item.track_id and item.crop_jpeg:
                    self.evidence.keep_crop(change.alert.alert_id, item.crop_jpeg)
            self.publish(
                {"type": "item", "transaction_id": tx.transaction_id, **self.view.item(item)}
            )
            self._changes(changes)

    def add_scan(self, scan: Scan) -> None:
        with self._lock:
            tx = self._transaction(scan.t)
            changes = tx.add_scan(scan)
            self.publish(
                {"type": "scan", "transaction_id": tx.transaction_id, **self.view.scan(scan)}
            )
            self._changes(changes)

    def on_input(
        self, message: ScanMessage | PosMessage, t: float | None = None, reply: Reply | None = None
    ) -> None:
        """A till event; ``t`` on the stream clock (default: the message's own, for replays).
        ``reply`` reaches the till that sent it (its websocket): a pick list needs one."""
        at = message.t if t is None else t
        if isinstance(message, ScanMessage):
            self.add_scan(Scan.from_message(message, at))
            return
        if message.type == "plu_request":
            if reply is None:
                raise PickListError(
                    "ask for a pick list over the till websocket (/api/pos/ws), where the "
                    "cashier's choice comes back"
                )
            self.offer_pick_list(message.event_id, message.transaction_id, reply)
            return
        with self._lock:
            if message.type == "transaction_start":
                if self.transaction is not None:
                    self.end_transaction(at, reason="next transaction started")
                self._start(at, message.transaction_id)
                self.pos_driven = True
            elif message.type == "void":
                if message.code is None:
                    raise ReconcileError("a void needs the voided code")
                tx = self._transaction(at)
                self._changes(tx.void(message.code, at))
            elif message.type in ("transaction_end", "payment") and self.transaction is not None:
                self.end_transaction(at, reason=message.type)

    def offer_pick_list(self, request_id: str, transaction_id: str, reply: Reply) -> dict[str, Any]:
        """The till asks which PLU the item on the scale is: the screen is shown the camera's
        proposals for the product on the scan area (none when nothing lies there), its picture
        at ``/api/picklist/<request_id>/picture.jpg``; the tap goes back through ``reply``.
        Returns the event the screen was sent."""
        # Outside the lock: embedding the crops and encoding the picture take milliseconds.
        identity = self.pipeline.identify_on_scan_area()
        candidates = [(c, s) for c, s in identity.candidates if is_plu(c)] if identity else []
        picture = encode_crop(identity.crop) if identity is not None else b""
        with self._lock:
            proposals = pick_list(candidates, SalesPrior(dict(self.plu_sales)))
            codes = tuple(p.code for p in proposals)
            for lapsed in self.pick_lists.offer(OpenList(request_id, codes, reply)):
                self.evidence.drop_crop(pick_picture_id(lapsed))
            self.offered_plus.update(codes)
            self.counters.pick_lists += 1
            if picture:
                self.evidence.keep_crop(pick_picture_id(request_id), picture)
            event = {
                "type": "pick_list",
                "request_id": request_id,
                "transaction_id": transaction_id,
                "proposals": [
                    {
                        "code": p.code,
                        "probability": round(p.probability, 3),
                        **self.view.product(p.code),
                    }
                    for p in proposals
                ],
                "has_picture": bool(picture),
            }
            self.publish(event)
            return event

    def choose_plu(self, request_id: str, code: str) -> dict[str, Any]:
        """The cashier tapped ``code`` on the pick list ``request_id``: the till that asked is told
        to key it ("plu_chosen"). Refused (PickListError) for a list not open, a PLU it did not
        offer, or a till no longer connected (the list is closed: the till asks again)."""
        with self._lock:
            offered = self.pick_lists.take(request_id, code)
            self.evidence.drop_crop(pick_picture_id(request_id))
            transaction = self.transaction.transaction_id if self.transaction else None
        message = {
            "type": "plu_chosen",
            "request_id": request_id,
            "code": code,
            "transaction_id": transaction,
        }
        delivered = offered.reply(message)
        self.publish({"type": "pick_list_closed", "request_id": request_id, "code": code})
        if not delivered:
            raise PickListError(
                f"the till that asked for pick list {request_id!r} is no longer connected: "
                "ask again from the till"
            )
        with self._lock:
            self.counters.picks += 1
        log.info("pick list %s: %s chosen", request_id, code)
        return message

    def resolve(self, alert_id: str, resolution: str, reason: str | None = None) -> Alert:
        with self._lock:
            owners = [self.transaction, *self.ended] if self.transaction else self.ended
            tx = next((o for o in owners if any(a.alert_id == alert_id for a in o.alerts)), None)
            if tx is None:
                raise ReconcileError(f"alert {alert_id} is not open on this lane")
            alert = tx.resolve(alert_id, resolution, self.last_frame_s, reason)
            self._changes([AlertChange("resolved", alert)])
            # A running transaction's frames go at its end; an ended one's go now.
            ended = tx is not self.transaction
            if ended and resolution == "not_an_item" and self.frames and alert.track_id is not None:
                self.frames.not_an_item(tx.transaction_id, alert.track_id)
            return alert

    def tick(self, t: float) -> None:
        """Time passes: scan-without-item notes, and the idle gap that ends a transaction."""
        with self._lock:
            tx = self.transaction
            if tx is None:
                return
            self._changes(tx.tick(t))
            if not self.pos_driven and t - self.last_activity_s > self.idle_gap_s:
                self.end_transaction(t, reason="idle")

    # -- transactions -----------------------------------------------------------------------
    def _transaction(self, t: float) -> TransactionReconciler:
        self.last_activity_s = max(self.last_activity_s, t)
        if self.transaction is None:
            self._start(t, None)
        assert self.transaction is not None
        return self.transaction

    def _start(self, t: float, transaction_id: str | None) -> None:
        self.transaction = TransactionReconciler(
            transaction_id or f"{self.lane_id}-{uuid.uuid4().hex[:12]}",
            self.catalog,
            self.t1,
            self.t2,
            self.reconcile_config,
            started_s=t,
            offered_plus=self.offered_plus,
        )
        self.pos_driven = False
        self.last_activity_s = t
        if self.frames is not None:
            self.frames.start(t)
        self.evidence.trim_crops()
        self.publish(
            {"type": "transaction_started", "transaction_id": self.transaction.transaction_id}
        )

    def end_transaction(self, t: float, reason: str = "end") -> dict[str, Any] | None:
        """The final check; the transaction, its alerts and samples go to the outbox."""
        with self._lock:
            for counted in self.pipeline.flush():  # items counted but still being identified
                self.add_item(SeenItem.from_counted(counted))
            tx = self.transaction
            if tx is None:
                return None
            for lost in self.pipeline.lost_so_far():  # not reported yet: the end cannot wait
                self._changes(tx.add_lost(lost.last_s))
            outcome, changes = tx.finish(t)
            self.last_outcome = outcome
            for scan in outcome.scans:
                if is_plu(scan.key) and scan.key is not None:
                    self.plu_sales[scan.key] = self.plu_sales.get(scan.key, 0) + scan.quantity
            self._changes(changes)
            self.records.transaction(outcome, tx.started_s)
            if self.frames is not None:
                self.frames.finish(outcome, tx.started_s, self.model_version)
            summary = {
                "transaction_id": outcome.transaction_id,
                "honest": outcome.honest,
                "items": len(outcome.seen),
                "scans": len(outcome.scans),
                "alerts": sum(a.status != "withdrawn" for a in outcome.alerts),
                "ended_by": reason,
            }
            self.finished = [summary, *self.finished[:19]]
            self.transaction = None
            for closed in self.pick_lists.close_all():  # a tap now would key the next sale
                self.evidence.drop_crop(pick_picture_id(closed))
                self.publish({"type": "pick_list_closed", "request_id": closed, "code": None})
            self.offered_plus = set()
            self.health.transactions += 1
            self.counters.transactions += 1
            self.ended = [tx, *self.ended[:2]]
            self.publish({"type": "transaction_ended", **summary})
            self._switch_pipeline()
            return summary

    # -- outputs ----------------------------------------------------------------------------
    def _changes(self, changes: list[AlertChange]) -> None:
        for change in changes:
            alert = change.alert
            evidence = self.evidence.crop(alert.alert_id) if change.change == "raised" else None
            item = self._item_of(alert) if change.change == "raised" else None
            if change.change == "raised":
                self.health.alerts_raised += 1
                by_type = self.counters.alerts_by_type
                by_type[alert.type] = by_type.get(alert.type, 0) + 1
                if self.clips is not None:
                    # When what it is about happened: its item's crossing (an alert at the
                    # final check names an item that passed seconds earlier), else its raising.
                    event_s = item.crossed_s if item is not None else alert.raised_s
                    self.clips.alert(alert.alert_id, alert.transaction_id, alert.track_id, event_s)
            self.records.alert(alert, evidence, item)
            self.publish(
                {"type": "alert", "change": change.change, "alert": self.view.alert(alert)}
            )

    def _item_of(self, alert: Alert) -> SeenItem | None:
        if alert.track_id is None:
            return None
        for tx in (self.transaction, *self.ended):
            for item in tx.items if tx is not None else ():
                if item.track_id == alert.track_id:
                    return item
        return None

    def clip_ready(self, clip: Clip) -> None:
        """A clip the recorder made (its worker thread): to the store, and to the screen."""
        self.records.clip(clip)
        with self._lock:
            self.evidence.keep_clip(clip.alert_id, clip.data)
        self.publish({"type": "clip", "alert_id": clip.alert_id})

    def state(self) -> dict[str, Any]:
        """Everything the lane screen shows, for a screen that (re)connects."""
        with self._lock:
            tx = self.transaction
            return {
                "type": "state",
                "lane_id": self.lane_id,
                "model_version": self.model_version,
                "transaction": self.view.transaction(tx) if tx is not None else None,
                "held_alerts": [self.view.alert(a) for a in self.held_alerts()],
                "recent": self.finished[:5],
            }

    def held_alerts(self) -> list[Alert]:
        """Open alerts of ended transactions (not notes), still waiting for the cashier."""
        return [
            a
            for tx in self.ended
            for a in tx.alerts
            if a.status == "open" and a.type != "scan_without_item"
        ]


def pick_picture_id(request_id: str) -> str:
    """The evidence cache's key for a pick list's picture (apart from alert ids)."""
    return f"pick:{request_id}"
