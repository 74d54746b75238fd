"""Wire messages as a lane would send them, for tests that drive the store server's ingest:
one transaction, alert, clip, sample or heartbeat per call, with ids built from the lane and a
number so each test can make as many distinct ones as it needs."""

from __future__ import annotations

import base64
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from checkout_node.clips import encode_webm
from laneguard.wire import (
    AlertMessage,
    ClipMessage,
    HeartbeatMessage,
    SampleMessage,
    ScannedEntry,
    TransactionMessage,
)

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def jpeg(seed: int = 0) -> bytes:
    image = np.random.default_rng(seed).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def webm(tmp: Path, seed: int = 0, frames: int = 12) -> bytes:
    """A real WebM clip: a bright square crossing a dark frame, 160x120."""
    images = []
    for index in range(frames):
        image = np.full((120, 160, 3), 20 + seed % 50, np.uint8)
        cv2.rectangle(image, (10 * index, 40), (10 * index + 30, 80), (60, 200, 240), -1)
        images.append(image)
    return encode_webm(images, 8.0, tmp)


def clip(lane: str, n: int, data: bytes, alert_lane: str | None = None) -> ClipMessage:
    """The clip of alert ``n`` (of ``alert_lane``, default the sending lane)."""
    return ClipMessage(
        message_id=f"{lane}:clip:{n}",
        lane_id=lane,
        alert_id=f"{alert_lane or lane}-a{n}",
        transaction_id=str(n),
        started_at=NOW,
        duration_s=1.5,
        fps=8.0,
        width=160,
        height=120,
        frames=12,
        clip_b64=b64(data),
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def transaction(lane: str, n: int, honest: bool = True) -> TransactionMessage:
    return TransactionMessage(
        message_id=f"{lane}:tx:{n}",
        lane_id=lane,
        transaction_id=str(n),
        started_at=NOW,
        ended_at=NOW,
        honest=honest,
        seen=[
            {
                "track_id": 1,
                "code": "4011",
                "vision_code": "4011",
                "band": "trusted",
                "score": 0.97,
                "crossed_s": 3.2,
                "decided_by": "scan (agree)",
            }
        ],
        scanned=[
            {
                "event_id": f"s{n}",
                "t": 2.5,
                "code": "4011",
                "key": "4011",
                "quantity": 1,
                "source": "keypad",
                "weight_g": 420,
            }
        ],
    )


def alert(lane: str, n: int, status: str = "open", image: bytes | None = None) -> AlertMessage:
    return AlertMessage(
        message_id=f"{lane}:alert:{n}:{status}",
        lane_id=lane,
        alert_id=f"{lane}-a{n}",
        transaction_id=str(n),
        alert_type="unscanned_item",
        severity="high",
        value_minor=599,
        track_id=3,
        seen_code="4011",
        status=status,  # type: ignore[arg-type]
        resolution="rescanned" if status == "resolved" else None,
        raised_at=NOW,
        evidence_jpeg_b64=b64(image) if image else None,
    )


def sample(lane: str, n: int, image: bytes) -> SampleMessage:
    return SampleMessage(
        message_id=f"{lane}:sample:{n}:1",
        lane_id=lane,
        transaction_id=str(n),
        track_id=1,
        code="4011",
        vision_code="4011",
        band="trusted",
        score=0.97,
        reason="honest",
        captured_at=NOW,
        crop_jpeg_b64=b64(image),
    )


def heartbeat(lane: str, at: datetime, fps: float) -> HeartbeatMessage:
    return HeartbeatMessage(
        message_id=f"{lane}:hb:{at.timestamp()}",
        lane_id=lane,
        at=at,
        fps=fps,
        frames_dropped=0,
        camera="up",
        model_version="bootstrap-2",
        outbox_depth=0,
        uptime_s=10.0,
    )


def as_json(message: object) -> dict[str, object]:
    return json.loads(message.model_dump_json())  # type: ignore[attr-defined, no-any-return]


def vouching_transactions(samples: Iterable[SampleMessage | dict]) -> list[TransactionMessage]:
    """The honest transactions a lane sends along with its honest crops, each scanning the
    codes of its crops: the store lets a crop teach only when it holds such a transaction
    (store_server.learning.vouched_for)."""
    codes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for sample in samples:
        fields = sample.model_dump() if isinstance(sample, SampleMessage) else sample
        if fields["reason"] == "honest" and fields["code"]:
            codes[(str(fields["lane_id"]), str(fields["transaction_id"]))].append(fields["code"])
    return [
        transaction(lane, 0).model_copy(
            update={
                "message_id": f"{lane}:tx:{transaction_id}",
                "transaction_id": transaction_id,
                "seen": [],
                "scanned": [
                    ScannedEntry(
                        event_id=f"s{index}",
                        t=1.0 + index,
                        code=code,
                        key=code,
                        quantity=1,
                        source="scanner",
                    )
                    for index, code in enumerate(scanned)
                ],
            }
        )
        for (lane, transaction_id), scanned in codes.items()
    ]
