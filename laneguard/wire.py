"""The wire schema: every message that crosses between a lane and the outside world.

Both checkout_node and store_server import this module (and nothing of each other). Every
message carries ``schema_version`` so a store can run lanes of mixed software versions during a
rollout; a receiver rejects versions it does not know with a clear error.

Two directions: the lane's inputs from the till (scan and POS events, which the simulator's
live feed also sends), and what a lane delivers to its store server through its outbox
(transactions, alerts, alert clips, training samples, detection frames, heartbeats). Each
delivered message has a ``message_id`` chosen by the lane, so a message retried after a lost
reply is stored once.
Images travel as base64 JPEG inside the JSON; the server checks what they really are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1


class WireModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = 1


class ScanMessage(WireModel):
    """A code read by a scanner, typed on the produce keypad, or read by the camera imager.

    ``code`` is exactly what the device produced, valid or not: an invalid code is recorded and
    shown, never dropped. ``t`` is seconds since the lane's stream started (the simulator) or
    the device's own clock; ``at`` is the wall-clock time when known.
    """

    type: Literal["scan"] = "scan"
    event_id: str = Field(min_length=1, max_length=64)
    t: float = Field(ge=0)
    code: str = Field(max_length=64)
    quantity: int = Field(default=1, ge=1, le=999)
    weight_g: int | None = Field(default=None, ge=0, le=100_000)
    # "pick_list": the cashier tapped the PLU on the lane screen's produce pick list and the
    # till keyed it (the lane's "plu_chosen" message), so the store sees which PLUs were picked.
    source: Literal["scanner", "keypad", "imager", "pos", "pick_list"] = "scanner"


class PosMessage(WireModel):
    """Transaction boundaries and payment from the till, and its request for a produce pick
    list ("plu_request": the item on the scale has no barcode; the lane screen shows the PLUs
    the camera proposes and the cashier's tap comes back to the till as "plu_chosen")."""

    type: Literal["transaction_start", "transaction_end", "payment", "void", "plu_request"]
    event_id: str = Field(min_length=1, max_length=64)
    t: float = Field(ge=0)
    transaction_id: str = Field(min_length=1, max_length=64)
    code: str | None = Field(default=None, max_length=64, description="voided code")


LaneInput = Annotated[ScanMessage | PosMessage, Field(discriminator="type")]

MAX_IMAGE_B64 = 2_000_000  # about 1.5 MB of JPEG
Band = Literal["trusted", "of_interest", "unknown"]


class LaneMessage(WireModel):
    message_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9:._-]+$")
    lane_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


class SeenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    track_id: int
    code: str | None = Field(max_length=64, description="final identity (scan or vision)")
    vision_code: str | None = Field(max_length=64)
    band: Band
    score: float
    crossed_s: float
    decided_by: str = Field(max_length=32)


class ScannedEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(max_length=64)
    t: float
    code: str = Field(max_length=64, description="as the device sent it")
    key: str | None = Field(max_length=64, description="catalog key; null when invalid")
    error: str | None = Field(default=None, max_length=300)
    quantity: int = Field(ge=1, le=999)
    weight_g: int | None = None
    source: str = Field(max_length=16)
    # False: the camera saw no item for this scan (a quiet entry, or a note when an item was
    # lost around it); None from a lane that does not say.
    item_seen: bool | None = None


class TransactionMessage(LaneMessage):
    """A finished transaction: what was seen, what was scanned, whether it was honest."""

    type: Literal["transaction"] = "transaction"
    transaction_id: str = Field(min_length=1, max_length=64)
    started_at: datetime
    ended_at: datetime
    honest: bool
    seen: list[SeenEntry] = Field(max_length=500)
    scanned: list[ScannedEntry] = Field(max_length=500)
    alert_ids: list[str] = Field(default_factory=list, max_length=500)


class Guess(BaseModel):
    """One of the recogniser's nearest products for an item, with its similarity."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: str = Field(min_length=1, max_length=64)
    score: float = Field(ge=-1, le=1)


class AlertMessage(LaneMessage):
    """An alert as raised, and again each time its status changes (same ``alert_id``)."""

    type: Literal["alert"] = "alert"
    alert_id: str = Field(min_length=1, max_length=64)
    transaction_id: str = Field(min_length=1, max_length=64)
    alert_type: Literal["unscanned_item", "switch", "scan_without_item", "quantity_mismatch"]
    subtype: str | None = Field(default=None, max_length=16)
    severity: Literal["high", "medium", "low", "note"]
    value_minor: int | None = None
    track_id: int | None = None
    seen_code: str | None = Field(default=None, max_length=64)
    scanned_code: str | None = Field(default=None, max_length=64)
    status: Literal["open", "resolved", "withdrawn"]
    resolution: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    raised_at: datetime
    closed_at: datetime | None = None
    evidence_jpeg_b64: str | None = Field(default=None, max_length=MAX_IMAGE_B64)
    # The recogniser's best guesses for the item (an unknown one above all), best first.
    guesses: list[Guess] = Field(default_factory=list, max_length=5)


class SampleMessage(LaneMessage):
    """A labelled item crop for learning: from an honest transaction (labelled by its scan) or
    an identity "of interest" (between T2 and T1) for a second opinion."""

    type: Literal["sample"] = "sample"
    transaction_id: str = Field(min_length=1, max_length=64)
    track_id: int
    code: str | None = Field(max_length=64, description="label: the scanned product")
    vision_code: str | None = Field(max_length=64)
    band: Band
    score: float
    reason: Literal["honest", "of_interest"]
    captured_at: datetime
    crop_jpeg_b64: str = Field(min_length=4, max_length=MAX_IMAGE_B64)


class UpdateReport(BaseModel):
    """The lane updater's last verdict on a bundle the store offered."""

    model_config = ConfigDict(extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    state: Literal["running", "refused", "smoke_failed", "rolled_back", "crashed"]
    detail: str = Field(default="", max_length=500)


class HeartbeatMessage(LaneMessage):
    """The lane's health, every few seconds."""

    type: Literal["heartbeat"] = "heartbeat"
    at: datetime
    fps: float = Field(ge=0)
    frames_dropped: int = Field(ge=0)
    camera: Literal["up", "down", "none"]
    model_version: str = Field(max_length=64)
    outbox_depth: int = Field(ge=0)
    uptime_s: float = Field(ge=0)
    # What a staged rollout judges a bundle by (absent from lanes older than the updater).
    bundle_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    # Counted since the running bundle went live (or the lane started).
    frame_errors: int = Field(default=0, ge=0, description="frames that failed")
    alerts_raised: int = Field(default=0, ge=0, description="alerts raised")
    transactions: int = Field(default=0, ge=0, description="transactions ended")
    update: UpdateReport | None = None


MAX_CLIP_B64 = 4_000_000  # about 3 MB of video: a few seconds at the lane's clip size


class ClipMessage(LaneMessage):
    """A short video of an alert's event (WebM/VP8, privacy-filtered on the lane), sent after
    the alert itself: the alert never waits for its clip."""

    type: Literal["clip"] = "clip"
    alert_id: str = Field(min_length=1, max_length=64)
    transaction_id: str = Field(min_length=1, max_length=64)
    started_at: datetime
    duration_s: float = Field(gt=0, le=60)
    fps: float = Field(gt=0, le=60)
    width: int = Field(gt=0, le=1920)
    height: int = Field(gt=0, le=1080)
    frames: int = Field(gt=0, le=3600)
    media_type: Literal["video/webm"] = "video/webm"
    clip_b64: str = Field(min_length=4, max_length=MAX_CLIP_B64)


MAX_FRAME_BOXES = 64  # a checkout's scan area holds a few dozen objects at most
FrameReason = Literal["honest", "low_score", "unseen_scan", "not_an_item"]


class FrameBox(BaseModel):
    """One box on a kept frame, in the frame's own pixels.

    ``kind`` says what the lane knows of it: ``track``, a box of a track the transaction
    accounted for (its ``label`` is the track's class over its whole lifetime; in an honest
    transaction every one matched a scan, so it is a true box); ``of_interest``, a detection
    between T2 and T1 no track took (a larger model decides); ``not_an_item``, the box of a
    track the cashier said was not an item (a false box)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2")
    label: Literal["product", "non_merchandise", "hand"]
    kind: Literal["track", "of_interest", "not_an_item"]
    score: float = Field(ge=0, le=1, description="the detector's score on this frame")
    track_id: int | None = None


class FrameMessage(LaneMessage):
    """A camera frame kept for the detector to learn the store's own camera from, with its
    boxes: from an honest transaction (``honest``: every box labelled by its track), or "of
    interest" (``low_score`` boxes between T2 and T1, ``unseen_scan``: frames around a scan no
    item was seen for, where the detector missed one, ``not_an_item``: a false box the cashier
    named). Privacy-filtered on the lane (masks, faces) before it was encoded."""

    type: Literal["frame"] = "frame"
    transaction_id: str = Field(min_length=1, max_length=64)
    reason: FrameReason
    captured_at: datetime
    model_version: str = Field(max_length=64, description="the bundle whose detector boxed it")
    width: int = Field(gt=0, le=1920)
    height: int = Field(gt=0, le=1080)
    boxes: list[FrameBox] = Field(max_length=MAX_FRAME_BOXES)
    frame_jpeg_b64: str = Field(min_length=4, max_length=MAX_IMAGE_B64)


LaneOutput = Annotated[
    TransactionMessage
    | AlertMessage
    | SampleMessage
    | HeartbeatMessage
    | ClipMessage
    | FrameMessage,
    Field(discriminator="type"),
]
LANE_OUTPUT_KINDS: tuple[str, ...] = tuple(
    str(model.model_fields["type"].default)
    for model in (
        TransactionMessage,
        AlertMessage,
        SampleMessage,
        HeartbeatMessage,
        ClipMessage,
        FrameMessage,
    )
)


# -- store events: what a store server publishes to the store's own systems (MQTT) --------


class StoreEvent(WireModel):
    """Every event names itself (``event_id``: subscribers drop a redelivered one), its store
    and when it happened."""

    event_id: str = Field(min_length=1, max_length=64)
    store: str = Field(min_length=1, max_length=64)
    at: datetime


class AlertEvent(StoreEvent):
    """An alert raised, its status changed at the lane (resolved, withdrawn), or reviewed by a
    manager in the console."""

    type: Literal["alert"] = "alert"
    change: Literal["raised", "updated", "reviewed"]
    alert_id: str = Field(max_length=64)
    lane_id: str = Field(max_length=64)
    alert_type: str = Field(max_length=32)
    severity: str = Field(max_length=8)
    status: str = Field(max_length=12)
    value_minor: int | None = None
    seen_code: str | None = Field(default=None, max_length=64)
    scanned_code: str | None = Field(default=None, max_length=64)
    review: str | None = Field(default=None, max_length=16)
    reviewed_by: str | None = Field(default=None, max_length=64)


class LaneHealthEvent(StoreEvent):
    """A lane's state changed: ``ok``, ``camera down``, ``offline`` (no heartbeat for 30 s)."""

    type: Literal["lane_health"] = "lane_health"
    lane_id: str = Field(max_length=64)
    state: str = Field(max_length=16)
    previous: str | None = Field(default=None, max_length=16)
    model_version: str | None = Field(default=None, max_length=64)


class RolloutEvent(StoreEvent):
    """A rollout started, moved to its next stage, paused, resumed, completed or rolled back."""

    type: Literal["rollout"] = "rollout"
    rollout_id: int
    version: str = Field(max_length=64)
    stage: int
    stage_name: str | None = Field(default=None, max_length=64)
    state: str = Field(max_length=16)
