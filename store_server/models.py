"""The store server's own tables: what lanes deliver (transactions, alerts with evidence,
training samples, detection frames, health).

Every delivered message's id is recorded in ``ingested_message`` in the same database
transaction as its effect, so a message retried after a lost reply is stored exactly once.
Alerts are one row per ``alert_id``, updated as the lane reports its resolution.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint, event
from sqlmodel import Field, SQLModel

from product_db.models import utcnow


class IngestedMessage(SQLModel, table=True):
    """A delivered message's id, unique per lane: each lane names its own messages, and one
    lane's ids can never stand in for (or block) another's."""

    __tablename__ = "ingested_message"

    lane_id: str = Field(primary_key=True, max_length=64)
    message_id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(max_length=16)
    received_at: datetime = Field(default_factory=utcnow)


class TransactionRecord(SQLModel, table=True):
    __tablename__ = "lane_transaction"
    __table_args__ = (UniqueConstraint("lane_id", "transaction_id"),)

    id: int | None = Field(default=None, primary_key=True)
    lane_id: str = Field(max_length=64, index=True)
    transaction_id: str = Field(max_length=64)
    started_at: datetime
    ended_at: datetime = Field(index=True)
    honest: bool
    n_seen: int
    n_scanned: int
    seen: list[dict[str, object]] = Field(sa_column=Column(JSON, nullable=False))
    scanned: list[dict[str, object]] = Field(sa_column=Column(JSON, nullable=False))
    alert_ids: list[str] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)


class AlertRecord(SQLModel, table=True):
    __tablename__ = "alert"

    alert_id: str = Field(primary_key=True, max_length=64)
    lane_id: str = Field(max_length=64, index=True)
    transaction_id: str = Field(max_length=64, index=True)
    alert_type: str = Field(max_length=24, index=True)
    subtype: str | None = Field(default=None, max_length=16)
    severity: str = Field(max_length=8)
    value_minor: int | None = None
    track_id: int | None = None
    seen_code: str | None = Field(default=None, max_length=64)
    scanned_code: str | None = Field(default=None, max_length=64)
    status: str = Field(max_length=12, index=True)
    resolution: str | None = Field(default=None, max_length=32)
    reason: str | None = Field(default=None, max_length=500)
    raised_at: datetime = Field(index=True)
    closed_at: datetime | None = None
    evidence: str | None = Field(default=None, max_length=80, description="media name")
    # The lane recogniser's nearest products for the item: [{"code", "score"}], best first.
    guesses: list[dict[str, object]] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    updated_at: datetime = Field(default_factory=utcnow)
    # The manager's review in the console, apart from how the lane closed it.
    review: str | None = Field(default=None, max_length=16, index=True)
    review_note: str | None = Field(default=None, max_length=500)
    reviewed_by: str | None = Field(default=None, max_length=64)
    reviewed_at: datetime | None = None
    # Retention (store_server.retention): a manager may keep an alert's evidence past the
    # store's retention days; once deleted, when it was.
    keep_evidence: bool = Field(default=False)
    evidence_deleted_at: datetime | None = None


class AlertClip(SQLModel, table=True):
    """The video of an alert's event, which a lane sends after the alert (and which may arrive
    before it, after an outage): a row of its own, keyed by the lane and the alert it shows, so
    no lane can take the place of another lane's clip; it is shown only beside that lane's
    alert."""

    __tablename__ = "alert_clip"

    lane_id: str = Field(primary_key=True, max_length=64)
    alert_id: str = Field(primary_key=True, max_length=64)
    transaction_id: str = Field(max_length=64)
    media: str | None = Field(default=None, max_length=80, description="None once deleted")
    started_at: datetime
    duration_s: float
    fps: float
    width: int
    height: int
    frames: int
    size: int
    received_at: datetime = Field(default_factory=utcnow, index=True)


# The reviews that give a sample its label (``label``): a manager's confirm or relabel in the
# console, or the store's teacher above T3 (reviewed_by "teacher ..."). The fast and the slow
# path learn from these as from honest transactions' crops.
REVIEWED_LABELS = ("confirmed", "relabelled")


class SampleRecord(SQLModel, table=True):
    __tablename__ = "training_sample"
    __table_args__ = (UniqueConstraint("lane_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=128)
    lane_id: str = Field(max_length=64, index=True)
    transaction_id: str = Field(max_length=64)
    track_id: int
    code: str | None = Field(default=None, max_length=64, index=True)
    vision_code: str | None = Field(default=None, max_length=64)
    band: str = Field(max_length=12)
    score: float
    reason: str = Field(max_length=12)
    image: str = Field(max_length=80, description="media name")
    captured_at: datetime
    review: str = Field(default="pending", max_length=12, index=True)
    label: str | None = Field(default=None, max_length=64, description="code after review")
    reviewed_by: str | None = Field(default=None, max_length=64)
    # When ``review`` last changed from pending (set by the listener below, whoever reviews):
    # the chain link sends HQ the reviews made since it last looked.
    reviewed_at: datetime | None = Field(default=None, index=True)
    received_at: datetime = Field(default_factory=utcnow)
    # The store's teacher (store_server.teacher) on an "of interest" crop: when it looked, and
    # its nearest products [{"code", "score"}], best first, for the manager's one-tap pick.
    teacher_checked_at: datetime | None = Field(default=None, index=True)
    proposals: list[dict[str, object]] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )


class DetectionFrame(SQLModel, table=True):
    """A camera frame a lane kept for the detector to learn the store's own camera from, with
    the boxes the lane's detector and tracks gave it (``boxes``: the wire's FrameBox fields, in
    the frame's pixels; an "of interest" box gains ``verdict`` "yes" or "no" and ``by``, who
    gave it, once the frame teacher or a person decided it).

    ``review`` (store_server.frame_review): "pending" as it arrives; once the frame teacher has
    judged its "of interest" boxes, "teacher" (it decided every one) or "needs_review" (some
    wait for a person on the Samples page), then "reviewed" when a person decided the last. A
    frame with no "of interest" box stays "pending": its track boxes are its label."""

    __tablename__ = "detection_frame"
    __table_args__ = (UniqueConstraint("lane_id", "message_id"),)

    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(max_length=128)
    lane_id: str = Field(max_length=64, index=True)
    transaction_id: str = Field(max_length=64)
    reason: str = Field(max_length=16)
    # Retention deletes by capture time, hourly, over every lane's frames.
    captured_at: datetime = Field(index=True)
    received_at: datetime = Field(default_factory=utcnow)
    model_version: str = Field(max_length=64)
    width: int
    height: int
    boxes: list[dict[str, object]] = Field(sa_column=Column(JSON, nullable=False))
    image: str = Field(max_length=80, description="media name")
    review: str = Field(default="pending", max_length=12, index=True)
    # When the frame teacher (store_server.frame_teacher) looked at the frame, whether or not
    # it had a box to judge: it looks at each frame once.
    teacher_checked_at: datetime | None = Field(default=None, index=True)


class LaneHealth(SQLModel, table=True):
    """The newest heartbeat of each lane."""

    __tablename__ = "lane_health"

    lane_id: str = Field(primary_key=True, max_length=64)
    at: datetime
    fps: float
    frames_dropped: int
    camera: str = Field(max_length=8)
    model_version: str = Field(max_length=64)
    outbox_depth: int
    uptime_s: float
    last_seen: datetime = Field(default_factory=utcnow)
    bundle_sha256: str | None = Field(default=None, max_length=64)
    frame_errors: int = 0
    alerts_raised: int = 0
    transactions: int = 0
    update: dict[str, object] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Lane(SQLModel, table=True):
    """An enrolled lane. Its credential is stored as a SHA-256 digest: the secret is 256 random
    bits, so a slow password hash adds nothing but latency to every ingest."""

    __tablename__ = "lane"

    lane_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=120)
    credential_sha256: str = Field(max_length=64, unique=True)
    config: dict[str, object] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    active: bool = True
    enrolled_at: datetime = Field(default_factory=utcnow)
    hardware: dict[str, object] = Field(
        default_factory=dict, sa_column=Column(JSON, nullable=False)
    )


class EnrolmentToken(SQLModel, table=True):
    """A one-time token an IT admin hands to a new lane (printed, or in its first-boot file)."""

    __tablename__ = "enrolment_token"

    token_sha256: str = Field(primary_key=True, max_length=64)
    lane_id: str = Field(max_length=64, description="the id the lane will get")
    lane_name: str = Field(max_length=120)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    used_at: datetime | None = None


class User(SQLModel, table=True):
    __tablename__ = "console_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    password_hash: str = Field(max_length=200, description="argon2id")
    role: str = Field(max_length=16, description="manager or it_admin")
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow)


class ConsoleSession(SQLModel, table=True):
    """A signed-in browser. The cookie holds a random token; the table its SHA-256."""

    __tablename__ = "console_session"

    token_sha256: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="console_user.id", index=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    expires_at: datetime
    last_seen_at: datetime = Field(default_factory=utcnow, description="for the idle timeout")


class AuditEntry(SQLModel, table=True):
    """Every manager or IT admin action that changes something, and every sign-in."""

    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    username: str = Field(max_length=64, index=True)
    action: str = Field(max_length=48)
    target: str = Field(default="", max_length=128)
    detail: dict[str, object] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    client: str = Field(default="", max_length=64, description="address, or 'cli' on the server")


class SignInThrottle(SQLModel, table=True):
    """Failed sign-ins counted per account ("user:<name>") and per address ("addr:<ip>"):
    each failure doubles the wait before the next try, and enough in a row lock it for a while.
    In the database, so every server process behind a load balancer sees the same counts."""

    __tablename__ = "sign_in_throttle"

    key: str = Field(primary_key=True, max_length=200)
    failures: int = 0
    last_failure_at: datetime = Field(default_factory=utcnow)
    locked_until: datetime | None = None


class GalleryEntry(SQLModel, table=True):
    """A reference vector learned from an honest transaction's crop. Its id orders the
    store's gallery updates: a lane asks for the entries after the last id it has."""

    __tablename__ = "gallery_entry"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(max_length=64, index=True)
    vector_b64: str = Field(description="float32 little-endian, L2-normalised, base64")
    embedder_sha256: str = Field(max_length=64)
    sample_id: int | None = Field(default=None, foreign_key="training_sample.id", unique=True)
    transaction_id: str = Field(max_length=64)
    lane_id: str = Field(max_length=64)
    added_at: datetime = Field(default_factory=utcnow)
    withdrawn: bool = Field(default=False, description="removed after review (poisoning)")
    withdraws: int | None = Field(
        default=None, description="this row takes back that entry (lanes drop it)"
    )
    # An entry HQ sent (learned in another store of the chain): HQ's id, unique, so a message
    # delivered twice adds it once; None for the store's own entries.
    hq_entry_id: int | None = Field(default=None, unique=True)
    origin_store: str | None = Field(default=None, max_length=48)


class PriceOverride(SQLModel, table=True):
    """A price this store sets itself: HQ's catalog changes leave it as it is."""

    __tablename__ = "price_override"

    code: str = Field(primary_key=True, max_length=14)
    price_minor: int = Field(ge=0)
    set_by: str = Field(max_length=64)
    set_at: datetime = Field(default_factory=utcnow)


class ProductPicture(SQLModel, table=True):
    """A product's reference picture when the store has no crop of it from an honest
    transaction yet: so a new store's seen and scanned cards show the product from day one."""

    __tablename__ = "product_picture"

    code: str = Field(primary_key=True, max_length=14, description="catalog key")
    image: str = Field(max_length=80, description="media name")
    source: str = Field(max_length=32, description='where it came from, e.g. "simulator"')
    added_at: datetime = Field(default_factory=utcnow)


class ChainInbox(SQLModel, table=True):
    """Every message from HQ this store has applied, by id, recorded in the same database
    transaction as its effect: a redelivered message changes nothing twice."""

    __tablename__ = "chain_inbox"

    message_id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(max_length=16)
    received_at: datetime = Field(default_factory=utcnow)


class BundleRelease(SQLModel, table=True):
    """A model bundle published to this store's lanes (the file lives in data_dir/bundles)."""

    __tablename__ = "bundle_release"

    id: int | None = Field(default=None, primary_key=True)
    version: str = Field(max_length=64)
    release: int = Field(description="the manifest's release number (anti-rollback)")
    sha256: str = Field(max_length=64, unique=True)
    size: int
    signed_by: str | None = Field(default=None, max_length=64, description="key id, if signed")
    published_by: str = Field(max_length=64)
    published_at: datetime = Field(default_factory=utcnow)
    notes: str = Field(default="", max_length=500)
    gate_report: dict[str, object] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )


class Rollout(SQLModel, table=True):
    """A bundle going out in stages: canary lanes first, then shares of the rest.

    ``stages`` is a list of {"name", "lanes": [...]} or {"name", "share": 0..1}; a lane in an
    earlier stage stays in. ``previous_id`` is what the lanes go back to on a rollback (None:
    the bundle they shipped with)."""

    __tablename__ = "rollout"

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="bundle_release.id", index=True)
    previous_id: int | None = Field(default=None, foreign_key="bundle_release.id")
    stages: list[dict[str, object]] = Field(sa_column=Column(JSON, nullable=False))
    stage: int = 0
    state: str = Field(
        default="running", max_length=16, description="running, paused, completed, rolled_back"
    )
    soak_s: float = Field(default=1800.0, description="healthy time before the next stage")
    stage_started_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    reason: str = Field(default="", max_length=500, description="why it halted or ended")


@event.listens_for(SampleRecord.review, "set")
def _stamp_review(target: SampleRecord, value: str, old: object, _initiator: object) -> None:
    if value != "pending" and value != old:
        target.reviewed_at = utcnow()
