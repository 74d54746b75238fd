"""Storing what lanes deliver: one writer thread, group commit, bulk inserts.

Every request's validated messages go to one writer thread, which takes everything waiting
(from all lanes' requests) and stores it in one database transaction: transactions, samples and
detection frames as bulk inserts after one query for the ids already stored, alerts and
heartbeats one by one (they update rows). Then each request gets its own messages' results. On
SQLite this is the one writer the database allows anyway, without threads queueing on its lock;
on PostgreSQL with several server processes a clash on a unique key makes the group fall back
to storing message by message, each in its own savepoint, so a duplicate is only ever answered
"duplicate".

A message id seen before is "duplicate" and changes nothing; so is a second message for a
transaction already stored. A new alert, or a later report of its status, goes to the live feed
after the commit.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from laneguard.wire import (
    AlertMessage,
    ClipMessage,
    FrameMessage,
    HeartbeatMessage,
    SampleMessage,
    TransactionMessage,
)
from product_db.models import as_utc, utcnow
from store_server.frame_review import DECIDED_KINDS
from store_server.live import AlertFeed
from store_server.media import MediaStore, b64_size
from store_server.models import (
    AlertClip,
    AlertRecord,
    DetectionFrame,
    IngestedMessage,
    LaneHealth,
    SampleRecord,
    TransactionRecord,
)
from store_server.products import describe

log = logging.getLogger("laneguard.server.ingest")
STATUS_ORDER = {"open": 0, "resolved": 1, "withdrawn": 1}
MAX_GROUP = 2000  # messages in one database transaction


class IngestResult(BaseModel):
    message_id: str | None
    status: Literal["stored", "duplicate", "rejected"]
    error: str | None = None


Item = tuple[Any, bytes | None]  # a validated wire message and its checked JPEG, if any


def alert_owners(engine: Engine, alert_ids: list[str]) -> dict[str, str]:
    """alert id -> the lane that raised it, for those of ``alert_ids`` already stored."""
    with Session(engine) as session:
        rows = session.exec(
            select(AlertRecord.alert_id, AlertRecord.lane_id).where(
                col(AlertRecord.alert_id).in_(alert_ids)
            )
        )
        return dict(rows.all())


def store_group(session: Session, items: list[Item], media: MediaStore) -> list[IngestResult]:
    """Store ``items`` in ``session``'s transaction (the caller commits). Message ids are
    unique per lane: each lane chooses its own, and no lane's id can stand in for another's."""
    ids = [message.message_id for message, _ in items]
    done = set(
        session.exec(
            select(IngestedMessage.lane_id, IngestedMessage.message_id).where(
                col(IngestedMessage.message_id).in_(ids)
            )
        ).all()
    )
    transaction_ids = {m.transaction_id for m, _ in items if isinstance(m, TransactionMessage)}
    stored_transactions = (
        {
            (lane, tx)
            for lane, tx in session.exec(
                select(TransactionRecord.lane_id, TransactionRecord.transaction_id).where(
                    col(TransactionRecord.transaction_id).in_(transaction_ids)
                )
            )
        }
        if transaction_ids
        else set()
    )
    now = utcnow()
    results: list[IngestResult] = []
    received: list[dict[str, Any]] = []
    transactions: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    for message, image in items:
        if (message.lane_id, message.message_id) in done:
            results.append(IngestResult(message_id=message.message_id, status="duplicate"))
            continue
        done.add((message.lane_id, message.message_id))
        stored = True
        if isinstance(message, TransactionMessage):
            key = (message.lane_id, message.transaction_id)
            stored = key not in stored_transactions
            if stored:
                stored_transactions.add(key)
                transactions.append(_transaction_row(message, now))
        elif isinstance(message, SampleMessage):
            assert image is not None
            samples.append(_sample_row(message, media.save(image), now))
        elif isinstance(message, FrameMessage):
            assert image is not None
            frames.append(_frame_row(message, media.save(image), now))
        else:  # alerts and heartbeats update existing rows: the ORM, one by one
            results.append(_store(session, message, image, media))
            continue
        received.append(
            {
                "message_id": message.message_id,
                "lane_id": message.lane_id,
                "kind": message.type,
                "received_at": now,
            }
        )
        status: Literal["stored", "duplicate"] = "stored" if stored else "duplicate"
        results.append(IngestResult(message_id=message.message_id, status=status))
    for table, rows in (
        (TransactionRecord, transactions),
        (SampleRecord, samples),
        (DetectionFrame, frames),
        (IngestedMessage, received),
    ):
        if rows:
            session.execute(insert(table), rows)
    return results


def store_one_by_one(session: Session, items: list[Item], media: MediaStore) -> list[IngestResult]:
    """The careful path: each message in its own savepoint (after a clash in a group)."""
    return [_store(session, message, image, media) for message, image in items]


def _transaction_row(message: TransactionMessage, now: datetime) -> dict[str, Any]:
    return {
        "lane_id": message.lane_id,
        "transaction_id": message.transaction_id,
        "started_at": message.started_at,
        "ended_at": message.ended_at,
        "honest": message.honest,
        "n_seen": len(message.seen),
        "n_scanned": len(message.scanned),
        "seen": [e.model_dump() for e in message.seen],
        "scanned": [e.model_dump() for e in message.scanned],
        "alert_ids": list(message.alert_ids),
        "received_at": now,
    }


def _sample_row(message: SampleMessage, image: str, now: datetime) -> dict[str, Any]:
    return {
        "message_id": message.message_id,
        "lane_id": message.lane_id,
        "transaction_id": message.transaction_id,
        "track_id": message.track_id,
        "code": message.code,
        "vision_code": message.vision_code,
        "band": message.band,
        "score": message.score,
        "reason": message.reason,
        "image": image,
        "captured_at": message.captured_at,
        "review": "pending",
        "label": None,
        "reviewed_by": None,
        "received_at": now,
    }


def _frame_row(message: FrameMessage, image: str, now: datetime) -> dict[str, Any]:
    """A detection frame's row; its boxes as the wire gave them, checked in the frame before
    (store_server.api.ingest), so a trainer reads them in the frame's own pixels."""
    return {
        "message_id": message.message_id,
        "lane_id": message.lane_id,
        "transaction_id": message.transaction_id,
        "reason": message.reason,
        "captured_at": message.captured_at,
        "received_at": now,
        "model_version": message.model_version,
        "width": message.width,
        "height": message.height,
        "boxes": [box.model_dump() for box in message.boxes],
        "image": image,
        "review": "pending",
    }


def _store(session: Session, message: Any, image: bytes | None, media: MediaStore) -> IngestResult:
    if session.get(IngestedMessage, (message.lane_id, message.message_id)) is not None:
        return IngestResult(message_id=message.message_id, status="duplicate")
    if isinstance(message, AlertMessage | ClipMessage):
        owner = session.get(AlertRecord, message.alert_id)
        if owner is not None and owner.lane_id != message.lane_id:
            error = f"alert {message.alert_id} is another lane's"
            return IngestResult(message_id=message.message_id, status="rejected", error=error)
    savepoint = session.begin_nested()
    try:
        suffix = ".webm" if isinstance(message, ClipMessage) else ".jpg"
        name = media.save(image, suffix) if image is not None else None
        stored = _apply(session, message, name)
        session.add(
            IngestedMessage(
                message_id=message.message_id, lane_id=message.lane_id, kind=message.type
            )
        )
        session.flush()
        savepoint.commit()
    except IntegrityError:
        savepoint.rollback()
        return IngestResult(message_id=message.message_id, status="duplicate")
    return IngestResult(message_id=message.message_id, status="stored" if stored else "duplicate")


def _apply(session: Session, message: Any, image: str | None) -> bool:
    if isinstance(message, TransactionMessage):
        return _transaction(session, message)
    if isinstance(message, AlertMessage):
        return _alert(session, message, image)
    if isinstance(message, SampleMessage):
        assert image is not None
        session.add(SampleRecord(**_sample_row(message, image, utcnow())))
        return True
    if isinstance(message, ClipMessage):
        assert image is not None
        return _clip(session, message, image)
    if isinstance(message, FrameMessage):
        assert image is not None
        session.add(DetectionFrame(**_frame_row(message, image, utcnow())))
        return True
    assert isinstance(message, HeartbeatMessage)
    return _heartbeat(session, message)


def _transaction(session: Session, message: TransactionMessage) -> bool:
    existing = session.exec(
        select(TransactionRecord).where(
            TransactionRecord.lane_id == message.lane_id,
            TransactionRecord.transaction_id == message.transaction_id,
        )
    ).first()
    if existing is not None:
        return False
    session.add(TransactionRecord(**_transaction_row(message, utcnow())))
    return True


def _alert(session: Session, message: AlertMessage, image: str | None) -> bool:
    record = session.get(AlertRecord, message.alert_id)
    if record is None:
        session.add(
            AlertRecord(
                alert_id=message.alert_id,
                lane_id=message.lane_id,
                transaction_id=message.transaction_id,
                alert_type=message.alert_type,
                subtype=message.subtype,
                severity=message.severity,
                value_minor=message.value_minor,
                track_id=message.track_id,
                seen_code=message.seen_code,
                scanned_code=message.scanned_code,
                status=message.status,
                resolution=message.resolution,
                reason=message.reason,
                raised_at=message.raised_at,
                closed_at=message.closed_at,
                evidence=image,
                guesses=[g.model_dump() for g in message.guesses] or None,
            )
        )
        return True
    # A later report of the same alert (its resolution); an older one arriving late is ignored.
    if STATUS_ORDER[message.status] < STATUS_ORDER.get(record.status, 0):
        return True
    record.status, record.resolution, record.reason = (
        message.status,
        message.resolution,
        message.reason,
    )
    record.closed_at = message.closed_at
    record.evidence = record.evidence or image
    session.add(record)
    return True


def _clip(session: Session, message: ClipMessage, media_name: str) -> bool:
    """One clip per alert: a second one (a lane re-making it after a crash) is a duplicate."""
    existing = session.get(AlertClip, (message.lane_id, message.alert_id))
    if existing is not None:
        return False
    session.add(
        AlertClip(
            alert_id=message.alert_id,
            lane_id=message.lane_id,
            transaction_id=message.transaction_id,
            media=media_name,
            started_at=message.started_at,
            duration_s=message.duration_s,
            fps=message.fps,
            width=message.width,
            height=message.height,
            frames=message.frames,
            size=b64_size(message.clip_b64),
        )
    )
    return True


def _heartbeat(session: Session, message: HeartbeatMessage) -> bool:
    """Keep the lane's newest health and note that the store heard from it now: ``last_seen``
    is the store's clock (what says a lane is online), ``at`` the lane's."""
    record = session.get(LaneHealth, message.lane_id)
    values = message.model_dump(exclude={"schema_version", "type", "message_id"})
    if record is None:
        session.add(LaneHealth(**values, last_seen=utcnow()))
        return True
    record.last_seen = utcnow()  # a late, older heartbeat still says the lane is there
    if as_utc(record.at) <= message.at:
        for key, value in values.items():
            setattr(record, key, value)
    session.add(record)
    return True


def alert_event(
    message: AlertMessage, names: dict[str, str | None] | None = None
) -> dict[str, Any]:
    """What the consoles' live feed shows of a new or updated alert (``names``: catalog names
    by code, where known)."""
    names = names or {}
    return {
        "type": "alert",
        "alert_id": message.alert_id,
        "lane_id": message.lane_id,
        "alert_type": message.alert_type,
        "subtype": message.subtype,
        "severity": message.severity,
        "value_minor": message.value_minor,
        "seen_code": message.seen_code,
        "scanned_code": message.scanned_code,
        "seen_name": names.get(message.seen_code or ""),
        "scanned_name": names.get(message.scanned_code or ""),
        "status": message.status,
        "resolution": message.resolution,
        "raised_at": message.raised_at.isoformat(),
        "has_evidence": bool(message.evidence_jpeg_b64),
        "ingested_unix": time.time(),
    }


@dataclass
class _Job:
    items: list[Item]
    future: Future[list[IngestResult]] = field(default_factory=Future)


class IngestWriter:
    """The one thread that writes deliveries; started on first use, drained on close."""

    def __init__(
        self,
        engine: Engine,
        media: MediaStore,
        feed: AlertFeed,
        on_honest_samples: Callable[[], None] | None = None,
        on_interest_samples: Callable[[], None] | None = None,
        on_interest_frames: Callable[[], None] | None = None,
    ) -> None:
        self.engine, self.media, self.feed = engine, media, feed
        self.on_honest_samples = on_honest_samples
        self.on_interest_samples = on_interest_samples
        self.on_interest_frames = on_interest_frames
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self.groups = 0

    def submit(self, items: list[Item]) -> Future[list[IngestResult]]:
        job = _Job(items)
        if not items:
            job.future.set_result([])
            return job.future
        self._ensure_started()
        self._jobs.put(job)
        return job.future

    def close(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="ingest", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            jobs, count = [job], len(job.items)
            while count < MAX_GROUP:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # finish this group, then stop
                    break
                jobs.append(more)
                count += len(more.items)
            self._write(jobs)

    def _write(self, jobs: list[_Job]) -> None:
        items = [item for job in jobs for item in job.items]
        try:
            results = self._store(items)
        except Exception as error:  # the lanes retry: nothing was committed
            log.exception("storing %d messages failed", len(items))
            for job in jobs:
                job.future.set_exception(error)
            return
        self.groups += 1
        start = 0
        for job in jobs:
            job.future.set_result(results[start : start + len(job.items)])
            start += len(job.items)
        stored_alerts = [
            message
            for (message, _), result in zip(items, results)
            if isinstance(message, AlertMessage) and result.status == "stored"
        ]
        if stored_alerts:
            names = self._names(stored_alerts)
            for message in stored_alerts:
                self.feed.publish(alert_event(message, names))
        honest = any(
            isinstance(message, SampleMessage) and message.reason == "honest"
            for message, _ in items
        )
        if honest and self.on_honest_samples is not None:
            self.on_honest_samples()
        interest = any(
            isinstance(message, SampleMessage) and message.reason == "of_interest"
            for message, _ in items
        )
        if interest and self.on_interest_samples is not None:
            self.on_interest_samples()
        unsure_boxes = any(
            isinstance(message, FrameMessage)
            and result.status == "stored"
            and any(box.kind in DECIDED_KINDS for box in message.boxes)
            for (message, _), result in zip(items, results)
        )
        if unsure_boxes and self.on_interest_frames is not None:
            self.on_interest_frames()

    def _names(self, alerts: list[AlertMessage]) -> dict[str, str | None]:
        """Catalog names of the codes the alerts name, for the consoles' live list."""
        try:
            with Session(self.engine) as session:
                codes = [c for a in alerts for c in (a.seen_code, a.scanned_code)]
                views = describe(session, codes, pictures=False)
        except Exception:  # names are a nicety: the alert goes out with codes alone
            log.exception("looking up product names for the live feed failed")
            return {}
        return {code: view.name for code, view in views.items()}

    def _store(self, items: list[Item]) -> list[IngestResult]:
        try:
            with Session(self.engine) as session:
                results = store_group(session, items, self.media)
                session.commit()
                return results
        except IntegrityError:  # another server process stored some of these meanwhile
            with Session(self.engine) as session:
                results = store_one_by_one(session, items, self.media)
                session.commit()
                return results
