"""Evidence retention: alert crops and clips are deleted after the store's retention days,
training crops after ``sample_retention_days``, detection frames after ``frame_retention_days``.

Evidence shows customers and their shopping; a store keeps it only as long as its policy says
(``retention_days``, 30 by default), except for the alerts a manager marked to keep (a confirmed
loss going to the police, a dispute). The alert itself (what, where, when, the review) stays: only
the images and video go, and the alert records when they went. Every run that deletes anything
writes one audit entry with what it deleted.

Media files are named by their content, so one file can belong to several rows (an item's crop
is both an alert's evidence and, in an honest retry, a training sample): a file is removed only
when no sample, no detection frame and no alert that is kept or still in its retention period
names it. Rows are updated and committed first, files removed after: a crash in between leaves a
file no row names, never a row naming a missing file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from product_db.models import utcnow
from store_server.auth import audit
from store_server.background import PeriodicLoop
from store_server.media import MediaStore, media_in_use
from store_server.models import (
    AlertClip,
    AlertRecord,
    DetectionFrame,
    GalleryEntry,
    SampleRecord,
)

log = logging.getLogger("laneguard.server.retention")
RETENTION_USER = "retention"  # the audit log's name for this job
BATCH = 500  # alerts per database transaction


@dataclass
class RetentionReport:
    alerts: int = 0  # alerts whose evidence was deleted
    crops: int = 0  # crop files removed
    clips: int = 0  # clip files removed
    kept: int = 0  # alerts past retention whose evidence a manager keeps
    samples: int = 0  # training crops' rows deleted
    sample_files: int = 0  # their files removed
    frames: int = 0  # detection frames' rows deleted
    frame_files: int = 0  # their files removed


def purge_expired_evidence(
    engine: Engine, media: MediaStore, days: int, now: datetime | None = None
) -> RetentionReport:
    """Delete the crops and clips of alerts raised more than ``days`` ago, except kept ones."""
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    report = RetentionReport()
    with Session(engine) as session:
        report.kept = len(
            session.exec(
                select(AlertRecord.alert_id).where(
                    col(AlertRecord.raised_at) < cutoff, col(AlertRecord.keep_evidence)
                )
            ).all()
        )
    while True:
        batch = _purge_batch(engine, cutoff, now, days)
        if batch is None:
            break
        alerts, crops, clips = batch
        removed = set(_remove_unused(engine, media, crops + clips))
        report.alerts += alerts
        report.crops += len(removed & set(crops))
        report.clips += len(removed & set(clips))
    orphans = _remove_unused(engine, media, _purge_orphan_clips(engine, cutoff))
    report.clips += len(orphans)
    if report.alerts:
        log.info("retention: evidence of %d alerts deleted (%d days)", report.alerts, days)
    return report


def purge_expired_samples(
    engine: Engine, media: MediaStore, days: int, now: datetime | None = None
) -> RetentionReport:
    """Delete the training crops captured more than ``days`` ago: rows, and files no other
    row names. Crops show customers' shopping as evidence does; the gallery entries learned
    from them keep their vectors and lose only the link to the crop."""
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    report = RetentionReport()
    while True:
        with Session(engine) as session:
            samples = list(
                session.exec(
                    select(SampleRecord).where(col(SampleRecord.captured_at) < cutoff).limit(BATCH)
                )
            )
            if not samples:
                break
            ids = [s.id for s in samples]
            for entry in session.exec(
                select(GalleryEntry).where(col(GalleryEntry.sample_id).in_(ids))
            ):
                entry.sample_id = None
                session.add(entry)
            session.flush()
            names = [s.image for s in samples]
            for sample in samples:
                session.delete(sample)
            audit(
                session,
                RETENTION_USER,
                "samples.deleted",
                f"{len(samples)} samples",
                days=days,
                captured_before=cutoff.isoformat(),
            )
            session.commit()
        report.samples += len(samples)
        report.sample_files += len(_remove_unused(engine, media, names))
    if report.samples:
        log.info("retention: %d training crops deleted (%d days)", report.samples, days)
    return report


def purge_expired_frames(
    engine: Engine, media: MediaStore, days: int, now: datetime | None = None
) -> RetentionReport:
    """Delete the detection frames captured more than ``days`` ago: rows, and files no other
    row names. A frame shows the whole lane, masked and blurred but more of the customer than
    a crop, so it goes as evidence does; whatever a model learned from it stays in the model."""
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    report = RetentionReport()
    while (names := _delete_frame_batch(engine, cutoff, days)) is not None:
        report.frames += len(names)
        report.frame_files += len(_remove_unused(engine, media, names))
    if report.frames:
        log.info("retention: %d detection frames deleted (%d days)", report.frames, days)
    return report


def _delete_frame_batch(engine: Engine, cutoff: datetime, days: int) -> list[str] | None:
    """Delete up to BATCH frames captured before ``cutoff`` (audited, committed); their media
    names, or None when none was left."""
    with Session(engine) as session:
        frames = list(
            session.exec(
                select(DetectionFrame)
                .where(  # the lane's clock is not trusted: a future date never keeps a frame
                    or_(
                        col(DetectionFrame.captured_at) < cutoff,
                        col(DetectionFrame.received_at) < cutoff,
                    )
                )
                .limit(BATCH)
            )
        )
        if not frames:
            return None
        names = [frame.image for frame in frames]
        for frame in frames:
            session.delete(frame)
        audit(
            session,
            RETENTION_USER,
            "frames.deleted",
            f"{len(frames)} detection frames",
            days=days,
            captured_before=cutoff.isoformat(),
        )
        session.commit()
        return names


def _purge_batch(
    engine: Engine, cutoff: datetime, now: datetime, days: int
) -> tuple[int, list[str], list[str]] | None:
    with Session(engine) as session:
        alerts = list(
            session.exec(
                select(AlertRecord)
                .where(
                    col(AlertRecord.raised_at) < cutoff,
                    col(AlertRecord.keep_evidence).is_(False),
                    col(AlertRecord.evidence_deleted_at).is_(None),
                )
                .limit(BATCH)
            )
        )
        if not alerts:
            return None
        crops, clips = [], []
        for alert in alerts:
            if alert.evidence:
                crops.append(alert.evidence)
            clip = session.get(AlertClip, (alert.lane_id, alert.alert_id))
            if clip is not None and clip.media:
                clips.append(clip.media)
                clip.media = None
                session.add(clip)
            alert.evidence = None
            alert.evidence_deleted_at = now
            session.add(alert)
        audit(
            session,
            RETENTION_USER,
            "evidence.deleted",
            f"{len(alerts)} alerts",
            days=days,
            raised_before=cutoff.isoformat(),
            crops=len(crops),
            clips=len(clips),
            alert_ids=[a.alert_id for a in alerts][:50],
        )
        session.commit()
        return len(alerts), crops, clips


def _purge_orphan_clips(engine: Engine, cutoff: datetime) -> list[str]:
    """Clips past retention whose alert never arrived (a lane that died mid-delivery)."""
    with Session(engine) as session:
        clips = list(
            session.exec(
                select(AlertClip).where(
                    col(AlertClip.received_at) < cutoff, col(AlertClip.media).is_not(None)
                )
            )
        )
        names = []
        for clip in clips:
            alert = session.get(AlertRecord, clip.alert_id)
            if alert is not None and alert.lane_id == clip.lane_id:
                continue  # an alert's clip goes with its alert
            assert clip.media is not None
            names.append(clip.media)
            clip.media = None
            session.add(clip)
        if names:
            audit(
                session,
                RETENTION_USER,
                "evidence.deleted",
                "clips without an alert",
                clips=len(names),
            )
        session.commit()
        return names


def _remove_unused(engine: Engine, media: MediaStore, names: list[str]) -> list[str]:
    """Remove the files of ``names`` that no remaining row names; returns those removed."""
    if not names:
        return []
    with Session(engine) as session:
        used = media_in_use(session, names)
    removed = []
    for name in dict.fromkeys(names):
        if name not in used and media.delete(name):
            removed.append(name)
    return removed


class RetentionLoop(PeriodicLoop):
    """The purge ``first_s`` after start, then every ``every_s`` (hourly by default)."""

    def __init__(
        self,
        engine: Engine,
        media: MediaStore,
        days: int,
        every_s: float = 3600.0,
        first_s: float = 300.0,
        sample_days: int | None = None,
        frame_days: int | None = None,
    ) -> None:
        def purge() -> None:
            purge_expired_evidence(engine, media, days)
            if sample_days is not None:
                purge_expired_samples(engine, media, sample_days)
            if frame_days is not None:
                purge_expired_frames(engine, media, frame_days)

        super().__init__("retention", purge, every_s, first_s)
