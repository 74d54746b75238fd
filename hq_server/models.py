"""HQ's own tables: the chain's stores, what they sent (pooled samples, learned gallery
entries, daily summaries, status), what HQ sends them (its outbox), releases and rollout waves.

HQ's console users, sessions, audit log and product catalog are the store schema's tables,
in the same database (``hq_server.db``): one sign-in and audit code for both services.
Every row a store sent is keyed by the store and the store's own id, so one store's ids can
never stand in for another's, and a message delivered twice is stored once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, LargeBinary, UniqueConstraint
from sqlmodel import Field, SQLModel

from product_db.models import utcnow


class Store(SQLModel, table=True):
    __tablename__ = "hq_store"

    store_id: str = Field(primary_key=True, max_length=48)
    name: str = Field(max_length=120)
    credential_sha256: str = Field(default="", max_length=64, index=True)
    public_key_pem: str = Field(default="", max_length=400, description="signs its messages")
    active: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    enrolled_at: datetime | None = None


class StoreToken(SQLModel, table=True):
    """A one-time enrolment token an HQ IT admin hands to a store's IT."""

    __tablename__ = "hq_store_token"

    token_sha256: str = Field(primary_key=True, max_length=64)
    store_id: str = Field(max_length=48, index=True)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class ChainReceipt(SQLModel, table=True):
    """A stored message's id, per store, recorded in the same transaction as its effect."""

    __tablename__ = "hq_receipt"

    store_id: str = Field(primary_key=True, max_length=48)
    message_id: str = Field(primary_key=True, max_length=160)
    kind: str = Field(max_length=16)
    received_at: datetime = Field(default_factory=utcnow)


class PooledSample(SQLModel, table=True):
    """A crop from a store, with its label as the store last told it."""

    __tablename__ = "hq_sample"
    __table_args__ = (UniqueConstraint("store_id", "sample_id"),)

    id: int | None = Field(default=None, primary_key=True)
    store_id: str = Field(max_length=48, index=True)
    sample_id: int
    lane_id: str = Field(max_length=64)
    transaction_id: str = Field(max_length=64)
    track_id: int
    code: str | None = Field(default=None, max_length=64, index=True)
    vision_code: str | None = Field(default=None, max_length=64)
    band: str = Field(max_length=12)
    score: float
    reason: str = Field(max_length=12)
    review: str = Field(max_length=12)
    label: str | None = Field(default=None, max_length=64)
    reviewed_by: str | None = Field(default=None, max_length=64)
    image: str = Field(max_length=80, description="media name")
    captured_at: datetime
    received_at: datetime = Field(default_factory=utcnow, index=True)


class ChainGalleryEntry(SQLModel, table=True):
    """A gallery entry a store learned, which HQ signs and sends to every store (its id is the
    one every store knows it by) once it is released: when another store learned the same
    product alike (``released_by`` "store:<id>") or a person at HQ confirmed it (their name);
    until then it is held, and the store that learned it uses it alone. A row with
    ``withdraws`` takes one back everywhere."""

    __tablename__ = "hq_gallery_entry"
    __table_args__ = (UniqueConstraint("store_id", "store_entry_id"),)

    id: int | None = Field(default=None, primary_key=True)
    store_id: str = Field(max_length=48, index=True)
    store_entry_id: int | None = None
    code: str = Field(max_length=64, index=True)
    vector_b64: str
    embedder_sha256: str = Field(max_length=64)
    transaction_id: str = Field(max_length=64)
    lane_id: str = Field(max_length=64)
    withdrawn: bool = False
    withdraws: int | None = None
    added_at: datetime = Field(default_factory=utcnow)
    released_at: datetime | None = Field(default=None, index=True)
    released_by: str | None = Field(default=None, max_length=64)


class StoreDay(SQLModel, table=True):
    """One store's figures for one day: the newest summary it sent."""

    __tablename__ = "hq_store_day"

    store_id: str = Field(primary_key=True, max_length=48)
    day: str = Field(primary_key=True, max_length=10)
    as_of: datetime
    transactions: int
    honest: int
    currency: str = Field(max_length=3)
    alerts: list[dict[str, object]] = Field(sa_column=Column(JSON, nullable=False))


class StoreStatus(SQLModel, table=True):
    """The newest status a store sent."""

    __tablename__ = "hq_store_status"

    store_id: str = Field(primary_key=True, max_length=48)
    at: datetime
    received_at: datetime = Field(default_factory=utcnow)
    software: str = Field(max_length=32)
    lanes: list[dict[str, object]] = Field(sa_column=Column(JSON, nullable=False))
    production_sha256: str | None = Field(default=None, max_length=64)
    rollout: dict[str, object] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    backlog: int = 0


class Broadcast(SQLModel, table=True):
    """HQ's outbox: a signed message for the stores, written in the same transaction as the
    change it announces, and published by the JetStream link (then ``published_at``)."""

    __tablename__ = "hq_broadcast"

    id: int | None = Field(default=None, primary_key=True)
    subject: str = Field(max_length=128)
    message_id: str = Field(max_length=160, unique=True)
    kind: str = Field(max_length=16)
    data: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = Field(default=None, index=True)


class ChainRelease(SQLModel, table=True):
    """A bundle HQ published to the chain (the file lives in data_dir/bundles)."""

    __tablename__ = "hq_release"

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64)
    release: int
    sha256: str = Field(max_length=64, unique=True)
    size: int
    published_by: str = Field(max_length=64)
    published_at: datetime = Field(default_factory=utcnow)
    notes: str = Field(default="", max_length=500)
    gate_report: dict[str, object] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )


class ChainRollout(SQLModel, table=True):
    """A release going out to stores in waves: ``waves`` is a list of {"name", "stores"}; a
    store, once ordered, rolls out to its own lanes (canary lane first) and reports back."""

    __tablename__ = "hq_rollout"

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="hq_release.id", index=True)
    previous_id: int | None = Field(default=None, foreign_key="hq_release.id")
    waves: list[dict[str, object]] = Field(sa_column=Column(JSON, nullable=False))
    wave: int = 0
    state: str = Field(default="running", max_length=16)
    soak_s: float = 600.0
    wave_started_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    reason: str = Field(default="", max_length=500)


HQ_TABLES = frozenset(
    table.__tablename__
    for table in (
        Store,
        StoreToken,
        ChainReceipt,
        PooledSample,
        ChainGalleryEntry,
        StoreDay,
        StoreStatus,
        Broadcast,
        ChainRelease,
        ChainRollout,
    )
)
