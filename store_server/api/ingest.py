"""Ingest: what lanes deliver from their outboxes, in batches.

One request carries up to 500 messages of any kind (the wire schema's LaneOutput). Each is
validated on its own: a bad message is refused with its reason while the others in the batch
are kept, and the lane moves the refused one aside instead of retrying it forever (a detection
frame, too, when its JPEG is not the size it declares or a box falls outside it). What passes
goes to the store's ingest writer (store_server.ingest_store), which stores the messages of
many requests in one database transaction. A message id seen before is answered "duplicate"
and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from sqlalchemy.engine import Engine

from laneguard.image_headers import ImageHeaderError, jpeg_size
from laneguard.receipts import ingest_receipt, refusal_receipt
from laneguard.wire import (
    LANE_OUTPUT_KINDS,
    AlertMessage,
    ClipMessage,
    FrameBox,
    FrameMessage,
    LaneOutput,
    SampleMessage,
)
from product_db.errors import LaneGuardError
from store_server.deps import CurrentLane, Services
from store_server.ingest_store import IngestResult, Item, alert_owners
from store_server.media import (
    EvidenceImageError,
    check_jpeg,
    decode_b64,
    decode_jpeg_b64,
    decode_webm_b64,
)
from store_server.services import StoreServices

router = APIRouter(prefix="/api/v1", tags=["ingest"])
MAX_BATCH = 500
IMAGE_FIELDS = ("crop_jpeg_b64", "clip_b64", "evidence_jpeg_b64", "frame_jpeg_b64")
_message = TypeAdapter(LaneOutput)


class FrameBoxError(LaneGuardError, ValueError):
    """A detection frame's box that does not lie in the frame it came with."""


class IngestBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    messages: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class IngestResponse(BaseModel):
    stored: int
    duplicates: int
    rejected: int
    results: list[IngestResult]
    # The results signed with the store's key over the lane and the request body's SHA-256:
    # the lane deletes from its outbox only what a receipt it can verify says is stored, so a
    # forged "stored" from anyone between them loses nothing.
    receipt: dict[str, Any] | None = None


def _describe(error: ValidationError) -> str:
    parts = []
    for problem in error.errors()[:5]:
        where = ".".join(str(p) for p in problem["loc"]) or "message"
        parts.append(f"{where}: {problem['msg']}")
    return "; ".join(parts)


@router.post(
    "/ingest",
    response_model=IngestResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": IngestBatch.model_json_schema()}},
        }
    },
)
async def ingest(
    request: Request,
    lane_id: CurrentLane,
    services: Services,
) -> IngestResponse | JSONResponse:
    """Store a batch from the lane whose credential the request carries. A message naming
    another lane is refused: a lane's credential speaks for that lane only.

    The body is read only after the credential is checked (the server-wide body cap,
    laneguard.body_limit, bounds it), so an unauthenticated client cannot make the server hold
    a batch at all."""
    started = time.perf_counter()
    writer, key = services.ingest_writer, services.signing_key
    body = await request.body()
    try:
        batch = IngestBatch.model_validate_json(body)
    except ValidationError as error:
        return _refused(key, lane_id, body, 422, _describe(error))
    messages = _within_quota(services, lane_id, batch.messages)
    has_images = any(m.get(name) for m in messages for name in IMAGE_FIELDS)
    if has_images:  # decoding JPEGs and clips takes milliseconds: not on the event loop
        results, accepted, foreign = await asyncio.to_thread(_check, messages, lane_id)
    else:
        results, accepted, foreign = _check(messages, lane_id)
    if any(isinstance(message, AlertMessage | ClipMessage) for _, (message, _) in accepted):
        foreign += await asyncio.to_thread(_other_lanes_alerts, writer.engine, lane_id, accepted)
    if foreign:
        return _refused(
            key,
            lane_id,
            body,
            403,
            {
                "error": f"the credential is lane {lane_id!r}'s; these messages speak for "
                "another lane and nothing of this request was stored",
                "message_ids": foreign,
            },
        )
    stored = await asyncio.wrap_future(writer.submit([item for _, item in accepted]))
    for (index, _), result in zip(accepted, stored):
        results[index] = result
    done = [r for r in results if r is not None]
    services.metrics.ingested(_by_kind(messages, results), time.perf_counter() - started)
    return IngestResponse(
        stored=sum(r.status == "stored" for r in done),
        duplicates=sum(r.status == "duplicate" for r in done),
        rejected=sum(r.status == "rejected" for r in done),
        results=done,
        receipt=ingest_receipt(lane_id, body, done, key),
    )


def _refused(
    key: Ed25519PrivateKey, lane_id: str, body: bytes, status: int, detail: Any
) -> JSONResponse:
    """The batch refused as a whole, with the store's signed word for it (the lane moves a
    message aside only on that)."""
    receipt = refusal_receipt(lane_id, body, status, key)
    return JSONResponse({"detail": detail, "receipt": receipt}, status_code=status)


def _within_quota(
    services: StoreServices, lane_id: str, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The messages of the batch the lane's quotas let in now, in order, before any image is
    decoded. Those left out get no result (the lane keeps them queued and sends them again);
    when none is let in, 429 with Retry-After. Each left-out message is counted in the
    ingest metric with status "over_quota"."""
    quota = services.lane_quota
    wanted = Counter(str(message.get("type")) for message in messages)
    granted = {kind: quota.take(lane_id, kind, n) for kind, n in wanted.items()}
    over = {kind: wanted[kind] - granted[kind] for kind in wanted if granted[kind] < wanted[kind]}
    if not over:
        return messages
    services.metrics.ingested({kind: {"over_quota": n} for kind, n in over.items()}, 0.0)
    kept = []
    for message in messages:
        kind = str(message.get("type"))
        if granted[kind] > 0:
            granted[kind] -= 1
            kept.append(message)
    if not kept:
        kinds = sorted(over)
        raise HTTPException(
            429,
            f"lane {lane_id!r} is over its quota of {', '.join(kinds)} per minute; "
            "send the rest later",
            headers={"Retry-After": str(max(quota.retry_after_s(k) for k in kinds))},
        )
    return kept


def _by_kind(
    messages: list[dict[str, Any]], results: list[IngestResult | None]
) -> dict[str, dict[str, int]]:
    """Message counts by kind and status for the metrics. A kind the wire schema does not know
    counts as "invalid": the label never takes a value a lane made up."""
    counts: dict[str, dict[str, int]] = {}
    for raw, result in zip(messages, results):
        if result is None:
            continue
        kind = raw.get("type") if raw.get("type") in LANE_OUTPUT_KINDS else "invalid"
        statuses = counts.setdefault(str(kind), {})
        statuses[result.status] = statuses.get(result.status, 0) + 1
    return counts


def _check(
    messages: list[dict[str, Any]], lane_id: str
) -> tuple[list[IngestResult | None], list[tuple[int, Item]], list[str]]:
    """Validate each message; the refused get their result now, the rest wait for storing.
    The third list holds the ids of messages that name a lane other than ``lane_id``."""
    results: list[IngestResult | None] = []
    accepted: list[tuple[int, Item]] = []
    foreign: list[str] = []
    for raw in messages:
        message_id = raw.get("message_id") if isinstance(raw.get("message_id"), str) else None
        try:
            message = _message.validate_python(raw)
            if message.lane_id != lane_id:
                foreign.append(message.message_id)
                continue
            accepted.append((len(results), (message, _images(message))))
            results.append(None)
        except ValidationError as error:
            results.append(
                IngestResult(message_id=message_id, status="rejected", error=_describe(error))
            )
        except (EvidenceImageError, FrameBoxError) as error:
            results.append(IngestResult(message_id=message_id, status="rejected", error=str(error)))
    return results, accepted, foreign


def _other_lanes_alerts(
    engine: Engine, lane_id: str, accepted: list[tuple[int, Item]]
) -> list[str]:
    """Ids of the messages in ``accepted`` that report on (or show) an alert another lane
    raised."""
    alerts = [
        message for _, (message, _) in accepted if isinstance(message, AlertMessage | ClipMessage)
    ]
    owned = alert_owners(engine, [message.alert_id for message in alerts])
    return [m.message_id for m in alerts if owned.get(m.alert_id, lane_id) != lane_id]


def _images(message: Any) -> bytes | None:
    if isinstance(message, AlertMessage) and message.evidence_jpeg_b64:
        return decode_jpeg_b64(message.evidence_jpeg_b64)
    if isinstance(message, SampleMessage):
        return decode_jpeg_b64(message.crop_jpeg_b64)
    if isinstance(message, ClipMessage):
        return decode_webm_b64(message.clip_b64)
    if isinstance(message, FrameMessage):
        return _frame_jpeg(message)
    return None


def _frame_jpeg(message: FrameMessage) -> bytes:
    """A frame's JPEG, refused unless it is the size the message declares and every box lies
    in it: the trainer takes the boxes as the frame's own pixels, so a frame whose boxes do not
    fit would teach the detector wrong boxes. The boxes and the JPEG's header are checked
    before the image is decoded, so a refused frame costs no decoding."""
    for index, box in enumerate(message.boxes):
        if not _box_fits(box, message.width, message.height):
            raise FrameBoxError(
                f"boxes.{index}: box {tuple(box.box)} falls outside the "
                f"{message.width}x{message.height} frame (0 <= x1 <= x2 <= width and "
                "0 <= y1 <= y2 <= height)"
            )
    data = decode_b64(message.frame_jpeg_b64, "frame")
    try:
        width, height = jpeg_size(data)
    except ImageHeaderError as error:
        raise EvidenceImageError(f"frame: {error}") from None
    if (width, height) != (message.width, message.height):
        raise EvidenceImageError(
            f"frame is {width}x{height} by its JPEG header; the message says "
            f"{message.width}x{message.height}"
        )
    check_jpeg(data)
    return data


def _box_fits(box: FrameBox, width: int, height: int) -> bool:
    """Whether ``box`` lies within a ``width`` x ``height`` frame (written so that a NaN
    coordinate, which compares false with everything, does not fit)."""
    x1, y1, x2, y2 = box.box
    return 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
