"""The lane's records as wire messages for the store server (see laneguard.wire).

Message ids are derived from what a message is about, so the same record queued twice (after a
crash between queueing and marking it queued) is one message: a transaction by its id, an alert
by its id and status, a clip by its alert, a sample by its transaction and track, a frame by
its transaction, reason and time.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from checkout_node.clips import Clip
from checkout_node.reconcile.model import Alert, SeenItem
from checkout_node.reconcile.reconciler import Outcome
from laneguard.wire import (
    AlertMessage,
    ClipMessage,
    FrameBox,
    FrameMessage,
    FrameReason,
    Guess,
    HeartbeatMessage,
    SampleMessage,
    ScannedEntry,
    SeenEntry,
    TransactionMessage,
)


@dataclass(frozen=True)
class StreamClock:
    """Maps the lane's stream seconds to wall-clock time (UTC)."""

    started_at: datetime

    @classmethod
    def now(cls, stream_t: float = 0.0) -> StreamClock:
        return cls(datetime.now(timezone.utc) - timedelta(seconds=stream_t))

    def at(self, t: float) -> datetime:
        return self.started_at + timedelta(seconds=t)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def transaction_message(
    lane_id: str, outcome: Outcome, started_s: float, clock: StreamClock
) -> TransactionMessage:
    return TransactionMessage(
        message_id=f"{lane_id}:tx:{outcome.transaction_id}",
        lane_id=lane_id,
        transaction_id=outcome.transaction_id,
        started_at=clock.at(started_s),
        ended_at=clock.at(outcome.ended_s),
        honest=outcome.honest,
        seen=[SeenEntry(**entry) for entry in outcome.seen],
        scanned=[
            ScannedEntry(**scan.to_json(), item_seen=scan.event_id not in outcome.unseen_scans)
            for scan in outcome.scans
        ],
        alert_ids=[a.alert_id for a in outcome.alerts],
    )


GUESSES = 3  # nearest distinct products an alert carries


def alert_message(
    lane_id: str,
    alert: Alert,
    clock: StreamClock,
    evidence_jpeg: bytes | None,
    item: SeenItem | None = None,
) -> AlertMessage:
    """``item``: the alert's item, whose nearest products go with the alert as its guesses."""
    guesses: list[Guess] = []
    for code, score in item.candidates if item is not None else ():
        if len(guesses) < GUESSES and all(g.code != code for g in guesses):
            guesses.append(Guess(code=code, score=max(-1.0, min(1.0, round(score, 3)))))
    return AlertMessage(
        message_id=f"{lane_id}:alert:{alert.alert_id}:{alert.status}",
        lane_id=lane_id,
        alert_id=alert.alert_id,
        transaction_id=alert.transaction_id,
        alert_type=alert.type,
        subtype=alert.subtype,
        severity=alert.severity,
        value_minor=alert.value_minor,
        track_id=alert.track_id,
        seen_code=alert.seen_code,
        scanned_code=alert.scanned_code,
        status=alert.status,
        resolution=alert.resolution,
        reason=alert.reason,
        raised_at=clock.at(alert.raised_s),
        closed_at=None if alert.closed_s is None else clock.at(alert.closed_s),
        evidence_jpeg_b64=_b64(evidence_jpeg) if evidence_jpeg else None,
        guesses=guesses,
    )


def clip_message(lane_id: str, clip: Clip, clock: StreamClock) -> ClipMessage:
    return ClipMessage(
        message_id=f"{lane_id}:clip:{clip.alert_id}",
        lane_id=lane_id,
        alert_id=clip.alert_id,
        transaction_id=clip.transaction_id,
        started_at=clock.at(clip.started_s),
        duration_s=round(clip.duration_s, 3),
        fps=clip.fps,
        width=clip.width,
        height=clip.height,
        frames=clip.frames,
        clip_b64=_b64(clip.data),
    )


def sample_messages(lane_id: str, outcome: Outcome, clock: StreamClock) -> list[SampleMessage]:
    """Crops worth learning from: every item of an honest transaction, labelled by its scan,
    and any item whose identity was "of interest" (for a second opinion on the server).

    When a scan had no item seen, the camera missed an item, so which scan pays for which
    item the camera could not name is a guess: only items the camera agrees with their scan
    about are labelled honest then."""
    labelled = {item.track_id: scan.key for item, scan, _ in outcome.pairs}
    by_track: dict[int, SeenItem] = {item.track_id: item for item, _, _ in outcome.pairs}
    agreement = {item.track_id: agreed for item, _, agreed in outcome.pairs}
    samples = []
    for entry in outcome.seen:
        track = entry["track_id"]
        item = by_track.get(track)
        sure_pairing = not outcome.unseen_scans or agreement.get(track) == "agree"
        honest = outcome.honest and item is not None and sure_pairing
        of_interest = entry["band"] == "of_interest"
        if not (honest or of_interest) or item is None or not item.crop_jpeg:
            continue
        samples.append(
            SampleMessage(
                message_id=f"{lane_id}:sample:{outcome.transaction_id}:{track}",
                lane_id=lane_id,
                transaction_id=outcome.transaction_id,
                track_id=track,
                code=labelled.get(track),
                vision_code=item.code,
                band=item.band,
                score=item.score,
                reason="honest" if honest else "of_interest",
                captured_at=clock.at(item.crossed_s),
                crop_jpeg_b64=_b64(item.crop_jpeg),
            )
        )
    return samples


def heartbeat_message(
    lane_id: str,
    fps: float,
    frames_dropped: int,
    camera: Literal["up", "down", "none"],
    model_version: str,
    outbox_depth: int,
    uptime_s: float,
    bundle: dict[str, Any] | None = None,
) -> HeartbeatMessage:
    """``bundle``: bundle_sha256, frame_errors, alerts_raised, transactions and the updater's
    update report, for the store's rollout judgement."""
    now = datetime.now(timezone.utc)
    return HeartbeatMessage(
        message_id=f"{lane_id}:hb:{int(now.timestamp() * 1000)}",
        lane_id=lane_id,
        at=now,
        fps=round(fps, 2),
        frames_dropped=frames_dropped,
        camera=camera,
        model_version=model_version,
        outbox_depth=outbox_depth,
        uptime_s=round(uptime_s, 1),
        **(bundle or {}),
    )


def frame_message(
    lane_id: str,
    transaction_id: str,
    reason: FrameReason,
    t: float,
    clock: StreamClock,
    model_version: str,
    jpeg: bytes,
    size: tuple[int, int],
    boxes: Sequence[FrameBox],
) -> FrameMessage:
    """A kept detection frame (already privacy-filtered and encoded); its id names the
    transaction, the reason and the frame's time, so a frame queued twice is one message."""
    return FrameMessage(
        message_id=f"{lane_id}:frame:{transaction_id}:{reason}:{round(t * 1000)}",
        lane_id=lane_id,
        transaction_id=transaction_id,
        reason=reason,
        captured_at=clock.at(t),
        model_version=model_version[:64],
        width=size[0],
        height=size[1],
        boxes=list(boxes),
        frame_jpeg_b64=_b64(jpeg),
    )
