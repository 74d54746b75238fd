"""The chain schema: what a store server and its chain's HQ say to each other over NATS
JetStream, shared by both (as ``wire.py`` is by a lane and its store).

Two streams, both created by whichever side starts first with the same configuration:

- ``LG_STORES``, subjects ``lg.store.<store id>.<kind>``: each store's samples (crops and
  labels), gallery entries it learned, manager reviews, daily summaries and status, to HQ.
- ``LG_HQ``, subjects ``lg.hq.all.<kind>`` (every store: gallery entries, catalog changes,
  releases) and ``lg.hq.store.<store id>.<kind>`` (one store: its rollout orders).

Every message is an envelope signed with its sender's Ed25519 key (the store's own key, whose
public half HQ recorded when the store enrolled; HQ's key, which the store received then). A
broker, or another store on it, can therefore neither forge nor alter a message, nor speak for
another store: HQ takes a message only if it is signed by the key of the store its subject and
envelope name. Each envelope's ``id`` is also its JetStream ``Nats-Msg-Id``, so a message
published twice (a sender that crashed before it saw the acknowledgement) is kept once by the
stream, and HQ's storage is idempotent by id besides (a redelivery after the stream's
duplicate window).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from laneguard.signing import sign_json, verify_json
from laneguard.wire import MAX_IMAGE_B64
from product_db.errors import LaneGuardError

STORES_STREAM = "LG_STORES"
HQ_STREAM = "LG_HQ"
STORE_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}$")  # a NATS subject token: no '.', '*', '>'
MAX_ENVELOPE_BYTES = 1_000_000  # under the NATS default max_payload (1 MB)
DUPLICATE_WINDOW_S = 600.0
RETENTION_DAYS = 14  # what a store or HQ offline that long still catches up on


class ChainMessageError(LaneGuardError, ValueError):
    """An envelope that is malformed, too large, unsigned or signed by the wrong key."""


def store_subject(store_id: str, kind: str) -> str:
    return f"lg.store.{store_id}.{kind}"


def hq_subject(kind: str, store_id: str | None = None) -> str:
    return f"lg.hq.store.{store_id}.{kind}" if store_id else f"lg.hq.all.{kind}"


def stream_configs() -> list[dict[str, Any]]:
    """Both streams' settings (keyword arguments of nats-py's ``add_stream``): on disk, kept
    ``RETENTION_DAYS`` days, duplicates dropped within ``DUPLICATE_WINDOW_S``."""
    common: dict[str, Any] = {
        "storage": "file",
        "max_age": RETENTION_DAYS * 86400.0,
        "duplicate_window": DUPLICATE_WINDOW_S,
        "max_msg_size": MAX_ENVELOPE_BYTES,
    }
    return [
        {"name": STORES_STREAM, "subjects": ["lg.store.>"], **common},
        {"name": HQ_STREAM, "subjects": ["lg.hq.>"], **common},
    ]


class ChainModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- store -> HQ ---------------------------------------------------------------------------


class SampleUp(ChainModel):
    """A crop a lane sent its store, with what the store knows of its label."""

    kind: Literal["sample"] = "sample"
    sample_id: int = Field(ge=1, description="the store's own id")
    lane_id: str = Field(max_length=64)
    transaction_id: str = Field(max_length=64)
    track_id: int
    code: str | None = Field(default=None, max_length=64, description="the scanned code")
    vision_code: str | None = Field(default=None, max_length=64)
    band: str = Field(max_length=12)
    score: float
    reason: str = Field(max_length=12)
    review: str = Field(max_length=12)
    label: str | None = Field(default=None, max_length=64)
    captured_at: datetime
    image_b64: str = Field(max_length=MAX_IMAGE_B64)


class GalleryUp(ChainModel):
    """A gallery entry the store learned (or a row taking one back, ``withdraws``)."""

    kind: Literal["gallery"] = "gallery"
    entry_id: int = Field(ge=1)
    code: str = Field(max_length=64)
    vector: str = Field(max_length=20_000, description="float32 little-endian, base64")
    embedder_sha256: str = Field(max_length=64)
    transaction_id: str = Field(max_length=64)
    lane_id: str = Field(max_length=64)
    withdraws: int | None = Field(default=None, description="the store's id of the entry")
    withdraws_hq_entry: int | None = Field(
        default=None, description="HQ's id: a manager here took back an entry HQ sent"
    )


class ReviewUp(ChainModel):
    """A manager's (or the teacher's) review of a sample: its label, or its rejection."""

    kind: Literal["review"] = "review"
    sample_id: int = Field(ge=1)
    review: str = Field(max_length=12)
    label: str | None = Field(default=None, max_length=64)
    reviewed_by: str | None = Field(default=None, max_length=64)


class AlertTally(ChainModel):
    """One alert type's day in a store, counted as the store's own analytics count it."""

    alert_type: str = Field(max_length=24)
    raised: int = Field(ge=0)
    value_minor: int = Field(ge=0, description="value of the alerted items")
    prevented: int = Field(ge=0, description="paid for or left in the store after the alert")
    prevented_value_minor: int = Field(ge=0, description="loss prevented")
    confirmed_loss: int = Field(ge=0, description="a manager confirmed the item left unpaid")
    confirmed_loss_value_minor: int = Field(ge=0)
    false_alarms: int = Field(ge=0)


# The figures of an AlertTally (all but its type), summed the same way wherever they are.
TALLY_FIGURES = tuple(name for name in AlertTally.model_fields if name != "alert_type")


class SummaryUp(ChainModel):
    """One day's figures of the store (UTC day), sent again as the day goes on: the newest
    ``as_of`` wins at HQ."""

    kind: Literal["summary"] = "summary"
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    as_of: datetime
    transactions: int = Field(ge=0)
    honest: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    alerts: list[AlertTally] = Field(max_length=32)


class LaneStatus(ChainModel):
    lane_id: str = Field(max_length=64)
    name: str = Field(max_length=120)
    state: str = Field(max_length=16)
    model_version: str | None = Field(default=None, max_length=64)
    bundle_sha256: str | None = Field(default=None, max_length=64)
    fps: float | None = None


class StatusUp(ChainModel):
    """The store's health now: its lanes, their bundles, its link's backlog, its rollout."""

    kind: Literal["status"] = "status"
    at: datetime
    store_name: str = Field(max_length=120)
    software: str = Field(max_length=32)
    lanes: list[LaneStatus] = Field(max_length=500)
    production_sha256: str | None = Field(default=None, max_length=64)
    rollout: dict[str, Any] | None = None
    backlog: int = Field(ge=0, description="messages the store has not yet handed to HQ")


StoreBody = Annotated[
    SampleUp | GalleryUp | ReviewUp | SummaryUp | StatusUp, Field(discriminator="kind")
]

# --- HQ -> stores --------------------------------------------------------------------------


class GalleryDown(ChainModel):
    """A gallery entry for every store's lanes (learned in ``origin_store``), or the taking
    back of one (``withdraws``, HQ's id)."""

    kind: Literal["gallery"] = "gallery"
    hq_entry_id: int = Field(ge=1)
    code: str = Field(max_length=64)
    vector: str = Field(max_length=20_000)
    embedder_sha256: str = Field(max_length=64)
    origin_store: str = Field(max_length=48, description="the store that learned it")
    origin_entry_id: int | None = Field(default=None, description="that store's own id")
    withdraws: int | None = None


class ProductDown(ChainModel):
    code: str = Field(max_length=14)
    display_code: str = Field(max_length=14)
    code_kind: str = Field(max_length=4)
    name: str = Field(max_length=200)
    brand: str = Field(default="", max_length=120)
    price_minor: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)
    category: str = Field(default="", max_length=80)
    sold_by: str = Field(max_length=8)
    age_restricted: bool = False
    active: bool = True


class CatalogDown(ChainModel):
    """Products added or changed at HQ (a store keeps its own price where it overrides one)."""

    kind: Literal["catalog"] = "catalog"
    change_id: int = Field(ge=1)
    products: list[ProductDown] = Field(max_length=2000)


class ReleaseDown(ChainModel):
    """A bundle HQ published: stores fetch the file from HQ and check it is this one."""

    kind: Literal["release"] = "release"
    release_id: int = Field(ge=1)
    version: str = Field(max_length=64)
    release: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=1)
    notes: str = Field(default="", max_length=500)


class RolloutDown(ChainModel):
    """HQ's order to one store: roll this release out to your lanes (canary lane first), or go
    back to the previous one. It names its store, under HQ's signature, so a copy published on
    another store's subject or on the chain-wide one is refused there (``check_hq_subject``)."""

    kind: Literal["rollout"] = "rollout"
    store_id: str = Field(pattern=STORE_ID.pattern, description="the store the order is for")
    rollout_id: int = Field(ge=1)
    action: Literal["install", "rollback"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    version: str = Field(max_length=64)
    soak_s: float = Field(ge=0)
    reason: str = Field(default="", max_length=500)


HqBody = Annotated[
    GalleryDown | CatalogDown | ReleaseDown | RolloutDown, Field(discriminator="kind")
]
_store_body: TypeAdapter[Any] = TypeAdapter(StoreBody)
_hq_body: TypeAdapter[Any] = TypeAdapter(HqBody)


def seal(sender: str, message_id: str, body: ChainModel, key: Ed25519PrivateKey) -> bytes:
    """The signed envelope's bytes, ready to publish."""
    envelope: dict[str, object] = {
        "v": 1,
        "sender": sender,
        "id": message_id,
        "body": body.model_dump(mode="json"),
    }
    data = json.dumps(sign_json(envelope, key), separators=(",", ":")).encode()
    if len(data) > MAX_ENVELOPE_BYTES:
        raise ChainMessageError(f"message {message_id} is {len(data)} bytes, over the cap")
    return data


def _open(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_ENVELOPE_BYTES:
        raise ChainMessageError(f"envelope of {len(data)} bytes, over {MAX_ENVELOPE_BYTES}")
    try:
        envelope = json.loads(data)
    except ValueError as error:
        raise ChainMessageError(f"envelope is not JSON: {error}") from None
    if not isinstance(envelope, dict) or envelope.get("v") != 1:
        raise ChainMessageError("envelope is not a version 1 LaneGuard chain message")
    if not isinstance(envelope.get("sender"), str) or not isinstance(envelope.get("id"), str):
        raise ChainMessageError("envelope names no sender or id")
    return envelope


def open_from_store(
    data: bytes, store_id: str, key_for: Callable[[str | None], Ed25519PublicKey | None]
) -> tuple[str, SampleUp | GalleryUp | ReviewUp | SummaryUp | StatusUp]:
    """The id and body of a store's envelope, once its signature is the store's own;
    ``key_for(key id the envelope names)`` is the store's key (None: not enrolled)."""
    envelope = _open(data)
    if envelope["sender"] != store_id:
        raise ChainMessageError(f"envelope from {envelope['sender']!r} on {store_id!r}'s subject")
    presented = envelope.get("key_id")
    key = key_for(presented if isinstance(presented, str) else None)
    if key is None:
        raise ChainMessageError(f"store {store_id!r} is not enrolled")
    return str(envelope["id"]), _checked(envelope, key, _store_body)


def open_from_hq(
    data: bytes, key: Ed25519PublicKey
) -> tuple[str, GalleryDown | CatalogDown | ReleaseDown | RolloutDown]:
    envelope = _open(data)
    if envelope["sender"] != "hq":
        raise ChainMessageError(f"envelope from {envelope['sender']!r}, not HQ")
    return str(envelope["id"]), _checked(envelope, key, _hq_body)


def check_hq_subject(
    subject: str, body: GalleryDown | CatalogDown | ReleaseDown | RolloutDown, store_id: str
) -> None:
    """Refuse an HQ message that arrived where it was not sent: an order for one store only on
    that store's own subject and naming it, everything chain-wide only on the chain-wide
    subject of its kind. The signature proves HQ wrote the body; this proves it was meant for
    the store reading it (anyone on the broker can copy a signed message to another subject)."""
    if isinstance(body, RolloutDown):
        if body.store_id != store_id:
            raise ChainMessageError(f"a rollout order for store {body.store_id!r}, not this one")
        expected = hq_subject(body.kind, store_id)
    else:
        expected = hq_subject(body.kind)
    if subject != expected:
        raise ChainMessageError(f"an HQ {body.kind} message on {subject!r}, not {expected!r}")


def _checked(envelope: dict[str, Any], key: Ed25519PublicKey, adapter: TypeAdapter[Any]) -> Any:
    try:
        verify_json(envelope, key)
    except ValueError as error:
        raise ChainMessageError(f"message {envelope['id']}: {error}") from None
    try:
        return adapter.validate_python(envelope.get("body"))
    except ValidationError as error:
        raise ChainMessageError(f"message {envelope['id']}: {error}") from None
