"""The store's teacher (T3): a larger model's second opinion on the crops lanes send as "of
interest" (identified between T2 and T1, so the lane would not name them).

The teacher (``trainer.teacher``: EfficientNet-Lite2, the shipped ``teacher.tar.gz``) embeds each
such crop and looks it up in its own gallery, extended with the store's labelled crops of the
products it was not trained on (honest transactions' crops and reviewed ones, embedded by the
teacher itself: its vectors and the lanes' live in different spaces). Then:
- at or above T3 (calibrated so that at most 1% of the labels it gives are wrong) its top
  product becomes the sample's label (``review`` "confirmed", ``reviewed_by`` "teacher ..."),
  which the fast path (gallery entries) and the slow path (``train run``) learn from;
- below T3 its top 3 are kept on the sample (``proposals``), and the console's Samples page
  shows them, each with a reference picture, for a manager to pick with one tap.
Every judged sample keeps its proposals either way, so a manager can see why. Each batch is one
audit entry (user "teacher"): how many crops it labelled and how many it left to a manager.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy import and_, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.bundle import extracted
from laneguard.embedding import Embedder
from laneguard.gallery import Gallery
from product_db.models import utcnow
from store_server.auth import audit
from store_server.background import PokedLoop
from store_server.media import MediaStore
from store_server.models import REVIEWED_LABELS, SampleRecord

log = logging.getLogger("laneguard.server.teacher")
TEACHER_USER = "teacher"
PROPOSALS = 3
BATCH = 200  # samples judged per database transaction
STORE_REFERENCES = 8  # of the store's labelled crops, per product the teacher lacks


@dataclass
class TeacherModel:
    embedder: Embedder
    gallery: Gallery
    t3: float
    version: str

    @classmethod
    def from_bundle(cls, bundle: Path) -> TeacherModel:
        folder, manifest = extracted(bundle)
        model = next(m for m in manifest.models if m.role == "embedder")
        return cls(
            Embedder(folder / model.file),
            Gallery.load(folder / manifest.gallery, expect_embedder_sha256=None),
            manifest.thresholds.t1,
            manifest.version,
        )


@dataclass
class TeacherReport:
    judged: int = 0
    labelled: int = 0  # at or above T3: the teacher's label
    proposed: int = 0  # below: its top 3 for a manager
    unreadable: int = 0


class StoreTeacher:
    """Judges the store's pending "of interest" samples; the model loads on first use."""

    def __init__(
        self,
        engine: Engine,
        media: MediaStore,
        bundle: Path,
        on_labelled: Callable[[], None] | None = None,
        model: TeacherModel | None = None,
    ) -> None:
        self.engine, self.media, self.bundle = engine, media, bundle
        self.on_labelled = on_labelled
        self._model = model
        self._references: dict[int, tuple[str, np.ndarray]] = {}  # sample id -> code, vector

    @property
    def model(self) -> TeacherModel:
        if self._model is None:
            self._model = TeacherModel.from_bundle(self.bundle)
        return self._model

    def judge(self) -> TeacherReport:
        """Every pending "of interest" sample the teacher has not looked at yet."""
        report = TeacherReport()
        while True:
            batch = self._judge_batch()
            report.judged += batch.judged
            report.labelled += batch.labelled
            report.proposed += batch.proposed
            report.unreadable += batch.unreadable
            if batch.judged < BATCH:
                break
        if report.labelled and self.on_labelled is not None:
            self.on_labelled()
        return report

    def _judge_batch(self) -> TeacherReport:
        report = TeacherReport()
        model = self.model
        with Session(self.engine) as session:
            pending = list(
                session.exec(
                    select(SampleRecord)
                    .where(
                        SampleRecord.reason == "of_interest",
                        SampleRecord.review == "pending",
                        col(SampleRecord.teacher_checked_at).is_(None),
                    )
                    .order_by(col(SampleRecord.id))
                    .limit(BATCH)
                )
            )
            if not pending:
                return report
            gallery = self._gallery(session, model)
            now = utcnow()
            for sample in pending:
                report.judged += 1
                sample.teacher_checked_at = now
                image = cv2.imread(str(self.media.path(sample.image)))
                if image is None:
                    report.unreadable += 1
                    sample.proposals = []
                    session.add(sample)
                    continue
                matches = gallery.identify(model.embedder.embed([image]), k=PROPOSALS)[0]
                sample.proposals = [{"code": m.code, "score": round(m.score, 4)} for m in matches]
                if matches[0].score >= model.t3:
                    sample.review, sample.label = "confirmed", matches[0].code
                    sample.reviewed_by = f"{TEACHER_USER} ({model.version})"[:64]
                    report.labelled += 1
                else:
                    report.proposed += 1
                session.add(sample)
            audit(
                session,
                TEACHER_USER,
                "sample.teacher",
                f"{report.judged} samples",
                labelled=report.labelled,
                proposed=report.proposed,
                t3=model.t3,
                model=model.version,
            )
            session.commit()
        return report

    def _gallery(self, session: Session, model: TeacherModel) -> Gallery:
        """The teacher's gallery and the store's labelled crops of products it lacks."""
        known = set(model.gallery.codes)
        rows = session.exec(
            select(SampleRecord.id, SampleRecord.label, SampleRecord.code, SampleRecord.image)
            .where(
                SampleRecord.review != "rejected",
                or_(
                    and_(col(SampleRecord.reason) == "honest", col(SampleRecord.code).is_not(None)),
                    and_(
                        col(SampleRecord.review).in_(REVIEWED_LABELS),
                        col(SampleRecord.label).is_not(None),
                    ),
                ),
            )
            .order_by(col(SampleRecord.id).desc())
        ).all()
        wanted: dict[str, list[tuple[int, str]]] = {}
        for sample_id, label, code, image in rows:
            product = label or code
            if product is None or product in known or sample_id is None:
                continue
            picked = wanted.setdefault(product, [])
            if len(picked) < STORE_REFERENCES:
                picked.append((sample_id, image))
        extra_vectors, extra_labels = [], []
        codes = list(model.gallery.codes)
        for product, samples in sorted(wanted.items()):
            vectors = [
                v for v in (self._vector(i, product, n) for i, n in samples) if v is not None
            ]
            if not vectors:
                continue
            codes.append(product)
            extra_vectors.extend(vectors)
            extra_labels.extend([len(codes) - 1] * len(vectors))
        if not extra_vectors:
            return model.gallery
        return Gallery(
            codes,
            np.concatenate([model.gallery.vectors, np.stack(extra_vectors)]).astype(np.float32),
            np.concatenate([model.gallery.labels, np.asarray(extra_labels, np.int32)]),
            model.gallery.embedder_sha256,
            model.gallery.version,
        )

    def _vector(self, sample_id: int, code: str, image: str) -> np.ndarray | None:
        cached = self._references.get(sample_id)
        if cached is not None and cached[0] == code:
            return cached[1]
        crop = cv2.imread(str(self.media.path(image)))
        if crop is None:
            return None
        vector = self.model.embedder.embed([crop])[0]
        self._references[sample_id] = (code, vector)
        return vector


class TeacherLoop(PokedLoop):
    """Runs the teacher whenever "of interest" samples have arrived, and once at start (those
    that arrived while the server was down); nothing when there is no teacher."""

    def __init__(self, teacher: StoreTeacher | None, interval_s: float = 2.0) -> None:
        super().__init__("teacher", teacher.judge if teacher else lambda: None, interval_s, True)
        self.teacher = teacher

    def start(self) -> None:
        if self.teacher is not None:
            super().start()
