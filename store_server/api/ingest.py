"""Ingest: what lanes deliver from their outboxes, in batches.

One request carries up to 500 messages of any kind (the wire schema's LaneOutput). Each is
validated and stored on its own: a bad message is refused with its reason while the others in
the batch are kept, and the lane moves the refused one aside instead of retrying it forever.
A message id seen before is answered "duplicate" and changes nothing.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from laneguard.wire import (
    AlertMessage,
    HeartbeatMessage,
    LaneOutput,
    SampleMessage,
    TransactionMessage,
)
from store_server.deps import get_engine, get_feed, get_media, get_write_lock
from store_server.lanes import current_lane
from store_server.live import AlertFeed
from store_server.media import ImageError, MediaStore, decode_jpeg_b64
from store_server.models import (
    AlertRecord,
    IngestedMessage,
    LaneHealth,
    SampleRecord,
    TransactionRecord,
)

router = APIRouter(prefix="/api/v1", tags=["ingest"])
MAX_BATCH = 500
MAX_BODY_BYTES = 64 * 1024**2
STATUS_ORDER = {"open": 0, "resolved": 1, "withdrawn": 1}
_message = TypeAdapter(LaneOutput)


class WrongLaneError(ValueError):
    """A message for a lane other than the one whose credential sent it."""


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class IngestResult(BaseModel):
    message_id: str | None
    status: Literal["stored", "duplicate", "rejected"]
    error: str | None = None


class IngestResponse(BaseModel):
    stored: int
    duplicates: int
    rejected: int
    results: list[IngestResult]


def _body_limit(request: Request) -> None:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise HTTPException(413, f"request body is {length} bytes; at most {MAX_BODY_BYTES}")


def _describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors()[:5]:
        where = ".".join(str(p) for p in problem["loc"]) or "message"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


@router.post("/ingest", response_model=IngestResponse, dependencies=[Depends(_body_limit)])
def ingest(
    batch: IngestBatch,
    engine: Annotated[Engine, Depends(get_engine)],
    media: Annotated[MediaStore, Depends(get_media)],
    lane_id: Annotated[str, Depends(current_lane)],
    feed: Annotated[AlertFeed, Depends(get_feed)],
    writing: Annotated[AbstractContextManager[Any], Depends(get_write_lock)],
) -> IngestResponse:
    """Store a batch from the lane whose credential the request carries. A message naming
    another lane is refused: a lane's credential speaks for that lane only."""
    results: list[IngestResult | None] = []
    accepted: list[tuple[int, Any, bytes | None]] = []
    for raw in batch.messages:  # checked before the database is touched
        message_id = raw.get("message_id") if isinstance(raw.get("message_id"), str) else None
        try:
            message = _message.validate_python(raw)
            if message.lane_id != lane_id:
                raise WrongLaneError(
                    f"lane_id {message.lane_id!r} is not this lane: the credential is "
                    f"lane {lane_id!r}'s"
                )
            accepted.append((len(results), message, _images(message)))
            results.append(None)
        except ValidationError as error:
            results.append(
                IngestResult(message_id=message_id, status="rejected", error=_describe(error))
            )
        except (ImageError, WrongLaneError) as error:
            results.append(IngestResult(message_id=message_id, status="rejected", error=str(error)))
    events: list[dict[str, Any]] = []
    with writing, Session(engine) as session:
        for index, message, images in accepted:
            result = _store(session, message, images, media)
            results[index] = result
            if isinstance(message, AlertMessage) and result.status == "stored":
                events.append(_alert_event(message))
        session.commit()
    for event in events:
        feed.publish(event)
    done = [r for r in results if r is not None]
    return IngestResponse(
        stored=sum(r.status == "stored" for r in done),
        duplicates=sum(r.status == "duplicate" for r in done),
        rejected=sum(r.status == "rejected" for r in done),
        results=done,
    )


def _alert_event(message: AlertMessage) -> dict[str, Any]:
    """What the consoles' live feed shows of a new or updated alert."""
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
        "status": message.status,
        "resolution": message.resolution,
        "raised_at": message.raised_at.isoformat(),
        "has_evidence": bool(message.evidence_jpeg_b64),
        "ingested_unix": time.time(),
    }


def _images(message: Any) -> bytes | None:
    if isinstance(message, AlertMessage) and message.evidence_jpeg_b64:
        return decode_jpeg_b64(message.evidence_jpeg_b64)
    if isinstance(message, SampleMessage):
        return decode_jpeg_b64(message.crop_jpeg_b64)
    return None


def _store(session: Session, message: Any, image: bytes | None, media: MediaStore) -> IngestResult:
    if session.get(IngestedMessage, message.message_id) is not None:
        return IngestResult(message_id=message.message_id, status="duplicate")
    savepoint = session.begin_nested()
    try:
        name = media.save(image) if image is not None else None
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
        session.add(
            SampleRecord(
                message_id=message.message_id,
                lane_id=message.lane_id,
                transaction_id=message.transaction_id,
                track_id=message.track_id,
                code=message.code,
                vision_code=message.vision_code,
                band=message.band,
                score=message.score,
                reason=message.reason,
                image=image,
                captured_at=message.captured_at,
            )
        )
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
    session.add(
        TransactionRecord(
            lane_id=message.lane_id,
            transaction_id=message.transaction_id,
            started_at=message.started_at,
            ended_at=message.ended_at,
            honest=message.honest,
            n_seen=len(message.seen),
            n_scanned=len(message.scanned),
            seen=[e.model_dump() for e in message.seen],
            scanned=[e.model_dump() for e in message.scanned],
            alert_ids=list(message.alert_ids),
        )
    )
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


def _heartbeat(session: Session, message: HeartbeatMessage) -> bool:
    record = session.get(LaneHealth, message.lane_id)
    values = message.model_dump(exclude={"schema_version", "type", "message_id"})
    if record is None:
        session.add(LaneHealth(**values))
        return True
    if _aware(record.at) > message.at:
        return True  # an older heartbeat delivered late
    for key, value in values.items():
        setattr(record, key, value)
    session.add(record)
    return True


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes for what was stored as UTC."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
