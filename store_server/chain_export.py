"""What a store tells its chain's HQ: every sample (crop and label), the gallery entries it
learned, the reviews of samples, a summary of each day and its status now.

The store's own tables are the outbox: the exporter keeps one cursor per table (the last id,
or review time, that HQ's stream has acknowledged) in ``data_dir/hq/cursor.json``, written
only after the acknowledgement. A store that was cut off from HQ for days therefore sends
everything it stored meanwhile, oldest first, and a store that stops between publishing and
writing its cursor sends a few messages twice (each message's id is derived from its row, so
the stream and HQ keep them once).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import and_, func, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.chain import (
    TALLY_FIGURES,
    AlertTally,
    ChainModel,
    GalleryUp,
    LaneStatus,
    ReviewUp,
    SampleUp,
    StatusUp,
    SummaryUp,
    seal,
    store_subject,
)
from laneguard.files import write_json_atomic
from laneguard.jetstream import Publication
from product_db.models import as_utc, utcnow
from store_server.analytics import FALSE_ALARM_RESOLUTIONS, PREVENTED_RESOLUTIONS, outcome_of
from store_server.lanes import lane_state
from store_server.media import MediaStore
from store_server.models import (
    AlertRecord,
    BundleRelease,
    GalleryEntry,
    Lane,
    LaneHealth,
    Rollout,
    SampleRecord,
    TransactionRecord,
)
from store_server.rollouts import active_rollout, production

log = logging.getLogger("laneguard.server.chain")


@dataclass
class Cursor:
    sample: int = 0
    gallery: int = 0
    reviewed_at: str = ""  # ISO time of the newest review sent, and its sample's id
    reviewed_id: int = 0
    status_at: str = ""
    summary_at: str = ""


@dataclass
class ChainExporter:
    engine: Engine
    media: MediaStore
    folder: Path  # data_dir/hq
    store_id: str
    store_name: str
    currency: str
    key: Ed25519PrivateKey
    status_every_s: float = 15.0
    summary_every_s: float = 300.0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        path = self.folder / "cursor.json"
        self.cursor = Cursor(**json.loads(path.read_text())) if path.exists() else Cursor()
        self._staged: Cursor | None = None

    # --- the JetStream link's source -------------------------------------------------------

    def pending(self, limit: int) -> list[Publication]:
        """The oldest messages HQ has not acknowledged, at most ``limit``; the cursor they
        would move to is kept until ``published`` says the stream stored them."""
        with self._lock:
            staged = Cursor(**asdict(self.cursor))
            out: list[Publication] = []
            with Session(self.engine) as session:
                out += self._samples(session, staged, limit)
                out += self._gallery(session, staged, limit - len(out))
                out += self._reviews(session, staged, limit - len(out))
                now = utcnow()
                if _due(staged.summary_at, self.summary_every_s, now) and len(out) < limit:
                    out += [self._summary(session, day) for day in _days(now)]
                    staged.summary_at = now.isoformat()
                if _due(staged.status_at, self.status_every_s, now):
                    out.append(self._status(session, now))
                    staged.status_at = now.isoformat()
            self._staged = staged
            return out

    def published(self, _batch: Sequence[Publication]) -> None:
        with self._lock:
            if self._staged is None:
                return
            self.cursor, self._staged = self._staged, None
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.folder / "cursor.json", asdict(self.cursor), mode=0o600)

    def backlog(self, session: Session | None = None) -> int:
        """Samples and gallery entries not yet with HQ (the status message's figure)."""
        if session is None:
            with Session(self.engine) as own:
                return self.backlog(own)
        samples = session.exec(
            select(func.count()).where(col(SampleRecord.id) > self.cursor.sample)
        ).one()
        entries = session.exec(
            select(func.count()).where(
                col(GalleryEntry.id) > self.cursor.gallery,
                col(GalleryEntry.hq_entry_id).is_(None),
            )
        ).one()
        return int(samples) + int(entries)

    # --- the messages ----------------------------------------------------------------------

    def _seal(self, kind: str, message_id: str, body: ChainModel) -> Publication:
        full_id = f"{self.store_id}:{message_id}"
        data = seal(self.store_id, full_id, body, self.key)
        # The broker drops a message whose id it saw in the last minutes from anyone: an id
        # another store could guess ("S1:sample:5") would let it make this store's message a
        # "duplicate". The signed bytes' hash is one only this store can produce, and the same
        # again for the same message sent again.
        dedup_id = f"{full_id}#{hashlib.sha256(data).hexdigest()[:32]}"
        return Publication(store_subject(self.store_id, kind), dedup_id, data)

    def _samples(self, session: Session, staged: Cursor, limit: int) -> list[Publication]:
        rows = session.exec(
            select(SampleRecord)
            .where(col(SampleRecord.id) > staged.sample)
            .order_by(col(SampleRecord.id))
            .limit(limit)
        ).all()
        out = []
        for row in rows:
            assert row.id is not None
            staged.sample = row.id
            try:
                image = self.media.path(row.image).read_bytes()
            except (OSError, ValueError) as error:
                log.warning("chain: sample %d has no crop (%s); not sent", row.id, error)
                continue
            body = SampleUp(
                sample_id=row.id,
                lane_id=row.lane_id,
                transaction_id=row.transaction_id,
                track_id=row.track_id,
                code=row.code,
                vision_code=row.vision_code,
                band=row.band,
                score=row.score,
                reason=row.reason,
                review=row.review,
                label=row.label,
                captured_at=row.captured_at,
                image_b64=base64.b64encode(image).decode(),
            )
            out.append(self._seal("sample", f"sample:{row.id}", body))
        return out

    def _gallery(self, session: Session, staged: Cursor, limit: int) -> list[Publication]:
        if limit <= 0:
            return []
        rows = session.exec(
            select(GalleryEntry)
            .where(col(GalleryEntry.id) > staged.gallery)
            .order_by(col(GalleryEntry.id))
            .limit(limit)
        ).all()
        out = []
        for row in rows:
            assert row.id is not None
            staged.gallery = row.id
            if row.hq_entry_id is not None:
                continue  # HQ's own, come from HQ
            withdrawn = session.get(GalleryEntry, row.withdraws) if row.withdraws else None
            body = GalleryUp(
                entry_id=row.id,
                code=row.code,
                vector=row.vector_b64,
                embedder_sha256=row.embedder_sha256,
                transaction_id=row.transaction_id,
                lane_id=row.lane_id,
                withdraws=row.withdraws if withdrawn and withdrawn.hq_entry_id is None else None,
                withdraws_hq_entry=withdrawn.hq_entry_id if withdrawn else None,
            )
            out.append(self._seal("gallery", f"gallery:{row.id}", body))
        return out

    def _reviews(self, session: Session, staged: Cursor, limit: int) -> list[Publication]:
        """Reviews of samples already sent (a sample sent later carries its review itself)."""
        if limit <= 0:
            return []
        query = select(SampleRecord).where(
            col(SampleRecord.reviewed_at).is_not(None), col(SampleRecord.id) <= staged.sample
        )
        if staged.reviewed_at:
            after = datetime.fromisoformat(staged.reviewed_at)
            query = query.where(
                or_(
                    col(SampleRecord.reviewed_at) > after,
                    and_(
                        col(SampleRecord.reviewed_at) == after,
                        col(SampleRecord.id) > staged.reviewed_id,
                    ),
                )
            )
        rows = session.exec(
            query.order_by(col(SampleRecord.reviewed_at), col(SampleRecord.id)).limit(limit)
        ).all()
        out = []
        for row in rows:
            assert row.id is not None and row.reviewed_at is not None
            at = as_utc(row.reviewed_at).isoformat()
            staged.reviewed_at, staged.reviewed_id = at, row.id
            body = ReviewUp(
                sample_id=row.id, review=row.review, label=row.label, reviewed_by=row.reviewed_by
            )
            out.append(self._seal("review", f"review:{row.id}:{at}", body))
        return out

    def _summary(self, session: Session, day: datetime) -> Publication:
        end = day + timedelta(days=1)
        transactions = session.exec(
            select(TransactionRecord.honest).where(
                col(TransactionRecord.ended_at) >= day, col(TransactionRecord.ended_at) < end
            )
        ).all()
        tallies: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(TALLY_FIGURES, 0))
        for alert in session.exec(
            select(AlertRecord).where(
                col(AlertRecord.raised_at) >= day, col(AlertRecord.raised_at) < end
            )
        ):
            tally, value, outcome = (
                tallies[alert.alert_type],
                max(alert.value_minor or 0, 0),
                outcome_of(alert),
            )
            tally["raised"] += 1
            tally["value_minor"] += value
            if outcome in (*PREVENTED_RESOLUTIONS, "recovered"):
                tally["prevented"] += 1
                tally["prevented_value_minor"] += value
            elif outcome == "confirmed_loss":
                tally["confirmed_loss"] += 1
                tally["confirmed_loss_value_minor"] += value
            elif outcome in (*FALSE_ALARM_RESOLUTIONS, "false_alarm"):
                tally["false_alarms"] += 1
        now = utcnow()
        body = SummaryUp(
            day=day.date().isoformat(),
            as_of=now,
            transactions=len(transactions),
            honest=sum(1 for honest in transactions if honest),
            currency=self.currency,
            alerts=[
                AlertTally(alert_type=alert_type, **t) for alert_type, t in sorted(tallies.items())
            ][:32],
        )
        return self._seal("summary", f"summary:{body.day}:{now.isoformat()}", body)

    def _status(self, session: Session, now: datetime) -> Publication:
        beats = {h.lane_id: h for h in session.exec(select(LaneHealth))}
        lanes = [
            LaneStatus(
                lane_id=lane.lane_id,
                name=lane.name,
                state=lane_state(beats.get(lane.lane_id), now),
                model_version=beat.model_version if beat else None,
                bundle_sha256=beat.bundle_sha256 if beat else None,
                fps=beat.fps if beat else None,
            )
            for lane in session.exec(select(Lane).where(Lane.active == True).order_by(Lane.lane_id))  # noqa: E712
            for beat in [beats.get(lane.lane_id)]
        ]
        current = production(session)
        body = StatusUp(
            at=now,
            store_name=self.store_name[:120],
            software=metadata.version("laneguard"),
            lanes=lanes[:500],
            production_sha256=current.sha256 if current else None,
            rollout=_rollout_state(session),
            backlog=self.backlog(session),
        )
        return self._seal("status", f"status:{now.isoformat()}", body)


def _rollout_state(session: Session) -> dict[str, Any] | None:
    """The store's newest rollout of a bundle HQ ordered, for HQ's wave to judge."""
    rollout = (
        active_rollout(session)
        or session.exec(select(Rollout).order_by(col(Rollout.id).desc())).first()
    )
    if rollout is None:
        return None
    release = session.get(BundleRelease, rollout.release_id)
    return {
        "sha256": release.sha256 if release else None,
        "state": rollout.state,
        "stage": rollout.stage,
        "stages": len(rollout.stages),
        "reason": rollout.reason,
    }


def _due(last: str, every_s: float, now: datetime) -> bool:
    return not last or (now - datetime.fromisoformat(last)).total_seconds() >= every_s


def _days(now: datetime) -> list[datetime]:
    """Yesterday (its last figures, after midnight) and today, as UTC midnights."""
    today = datetime(now.year, now.month, now.day, tzinfo=timezone.utc)
    return [today - timedelta(days=1), today]
