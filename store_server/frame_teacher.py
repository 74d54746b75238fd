"""The store's frame teacher (T3 for boxes): a larger detector's verdict on the boxes lanes
send as "of interest" on their detection frames.

A lane's detector is sized for the lane's computer; the teacher is the production bundle's
detector with the largest input (store_server.teacher_detector: more pixels per item), run on
the store server, where a second or two per frame costs nothing. For each "of interest" box it
takes the best score of its own detections of the box's label that overlap the box by at least
MIN_IOU, and:
- at or above T3 (``frame_teacher_t3``): verdict "yes", the box is a real object of its label;
- under ``frame_teacher_reject``: verdict "no", nothing of that label is there;
- between them it decides nothing: the Samples page shows the frame to a person, with the
  boxes drawn over it, for a one-tap Yes / No (store_server.console.frames).
Every judged box keeps the teacher's score (``teacher_score``), so a person sees how sure it
was. store_server.frame_review holds the rules the teacher and the person share.

The production bundle is looked up on every batch: after a rollout completes, the next frames
are judged by the new detector, and ``by`` names the version that judged each box. Each batch
is one audit entry (user "teacher", action "frames.labelled").

With the teacher off (``frame_teacher: false``) the same loop still moves each frame with "of
interest" boxes to "needs_review", undecided: no detector runs, and a person decides every box.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.bundle import extracted
from product_db.models import utcnow
from store_server.auth import audit
from store_server.background import PokedLoop
from store_server.frame_review import Verdict, of_interest, review_after_teacher, with_verdicts
from store_server.media import MediaStore
from store_server.models import DetectionFrame
from store_server.rollouts import production_bundle
from store_server.teacher import TEACHER_USER
from store_server.teacher_detector import LabelDetections, TeacherDetector, teacher_model_file

log = logging.getLogger("laneguard.server.frame_teacher")
# Frames per round: read in one short transaction, judged outside any (a detector run is tens
# of milliseconds; holding SQLite's write lock through fifty of them would stall ingest), then
# written in another.
BATCH = 50
MIN_IOU = 0.5  # the teacher's detection and the lane's box are the same object from here on


@dataclass(frozen=True)
class Thresholds:
    t3: float  # at or above: yes
    reject: float  # under: no

    def verdict(self, score: float) -> Verdict | None:
        if score >= self.t3:
            return "yes"
        if score < self.reject:
            return "no"
        return None


@dataclass
class FrameTeacherModel:
    """The production bundle's teacher detector and the version that names its verdicts."""

    detector: TeacherDetector
    version: str
    model_file: str
    bundle: Path

    @classmethod
    def from_bundle(cls, bundle: Path) -> FrameTeacherModel:
        folder, manifest = extracted(bundle)
        model = teacher_model_file(manifest)
        detector = TeacherDetector(folder / model.file, manifest.detector_classes)
        return cls(detector, manifest.version, model.file, bundle)

    @property
    def by(self) -> str:
        return f"{TEACHER_USER} ({self.version})"


def box_scores(
    detections: dict[str, LabelDetections], boxes: list[dict[str, Any]], indices: list[int]
) -> dict[int, float]:
    """The teacher's score for each box in ``indices``: its best detection of the box's label
    overlapping the box by MIN_IOU (0.0 for a label the detector does not know)."""
    scores: dict[int, float] = {}
    for index in indices:
        box = boxes[index]
        found = detections.get(str(box.get("label")))
        scores[index] = 0.0 if found is None else found.best_overlapping(box["box"], MIN_IOU)
    return scores


@dataclass
class FrameTeacherReport:
    frames: int = 0  # looked at (each once)
    judged: int = 0  # of those, frames with "of interest" boxes
    yes: int = 0  # boxes
    no: int = 0
    undecided: int = 0  # left to a person
    unreadable: int = 0  # frames whose picture would not decode: left pending
    inference_s: float = 0.0  # the detector's own time, all frames together

    def add(self, other: FrameTeacherReport) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True)
class _Pending:
    frame_id: int
    boxes: list[dict[str, Any]]
    image: str


class FrameTeacher:
    """Judges the store's frames the teacher has not looked at yet; the detector loads when
    the first frame with an "of interest" box needs it, and again after the production bundle
    changed. ``use_detector`` False: the teacher is off and hands every such frame, undecided,
    to a person."""

    def __init__(
        self,
        engine: Engine,
        media: MediaStore,
        data_dir: Path,
        shipped_bundle: Path,
        thresholds: Thresholds,
        model: FrameTeacherModel | None = None,
        use_detector: bool = True,
    ) -> None:
        self.engine, self.media, self.data_dir = engine, media, data_dir
        self.shipped_bundle, self.thresholds = shipped_bundle, thresholds
        self.use_detector = use_detector
        self._model = model  # given: used whatever the production bundle (tests)
        self._fixed = model is not None

    def model(self, bundle: Path) -> FrameTeacherModel:
        if self._model is None or (not self._fixed and self._model.bundle != bundle):
            self._model = FrameTeacherModel.from_bundle(bundle)
            log.info("frame teacher: %s of %s", self._model.model_file, self._model.version)
        return self._model

    def judge(self) -> FrameTeacherReport:
        """Every frame the teacher has not looked at yet, a batch at a time."""
        report = FrameTeacherReport()
        while True:
            batch = self._judge_batch()
            report.add(batch)
            if batch.frames < BATCH:
                return report

    def _judge_batch(self) -> FrameTeacherReport:
        report = FrameTeacherReport()
        with Session(self.engine) as session:
            rows = session.exec(
                select(DetectionFrame.id, DetectionFrame.boxes, DetectionFrame.image)
                .where(
                    DetectionFrame.review == "pending",
                    col(DetectionFrame.teacher_checked_at).is_(None),
                )
                .order_by(col(DetectionFrame.id))
                .limit(BATCH)
            ).all()
            bundle = production_bundle(session, self.data_dir, self.shipped_bundle)
        pending = [_Pending(i, list(b), image) for i, b, image in rows if i is not None]
        if not pending:
            return report
        decided: dict[int, list[dict[str, Any]]] = {}
        model: FrameTeacherModel | None = None
        for frame in pending:
            report.frames += 1
            indices = of_interest(frame.boxes)
            if not indices:
                continue  # nothing unsure on it: its boxes are its label
            if not self.use_detector:
                decided[frame.frame_id] = frame.boxes  # every box to a person
                report.undecided += len(indices)
                continue
            picture = cv2.imread(str(self.media.path(frame.image)))
            if picture is None:
                report.unreadable += 1
                continue
            model = self.model(bundle)
            detections = model.detector.detect(picture)
            report.inference_s += model.detector.last_inference_s
            decided[frame.frame_id] = self._decide(frame.boxes, indices, detections, model, report)
        self._write(pending, decided, model, report)
        return report

    def _decide(
        self,
        boxes: list[dict[str, Any]],
        indices: list[int],
        detections: dict[str, LabelDetections],
        model: FrameTeacherModel,
        report: FrameTeacherReport,
    ) -> list[dict[str, Any]]:
        """``boxes`` with the teacher's score on each "of interest" box and its verdict where
        the score is clear either way."""
        report.judged += 1
        scores = box_scores(detections, boxes, indices)
        scored = [dict(box) for box in boxes]
        for index, score in scores.items():
            scored[index]["teacher_score"] = round(score, 4)
        verdicts: dict[int, tuple[Verdict, str]] = {}
        for index, score in scores.items():
            verdict = self.thresholds.verdict(score)
            if verdict is None:
                report.undecided += 1
                continue
            verdicts[index] = (verdict, model.by)
            report.yes += verdict == "yes"
            report.no += verdict == "no"
        return with_verdicts(scored, verdicts)

    def _write(
        self,
        pending: list[_Pending],
        decided: dict[int, list[dict[str, Any]]],
        model: FrameTeacherModel | None,
        report: FrameTeacherReport,
    ) -> None:
        """Stamp every frame looked at and write the verdicts, skipping a frame that went
        meanwhile (retention) or that someone else judged (another server process)."""
        now = utcnow()
        with Session(self.engine) as session:
            for item in pending:
                frame = session.get(DetectionFrame, item.frame_id, with_for_update=True)
                if (
                    frame is None
                    or frame.review != "pending"
                    or frame.teacher_checked_at is not None
                ):
                    continue
                frame.teacher_checked_at = now
                boxes = decided.get(item.frame_id)
                if boxes is not None:
                    frame.boxes = boxes
                    frame.review = review_after_teacher(boxes)
                session.add(frame)
            if report.judged and model is not None:
                audit(
                    session,
                    TEACHER_USER,
                    "frames.labelled",
                    f"{report.judged} frame{'s' if report.judged != 1 else ''}",
                    yes=report.yes,
                    no=report.no,
                    undecided=report.undecided,
                    t3=self.thresholds.t3,
                    reject=self.thresholds.reject,
                    model=model.version,
                    detector=model.model_file,
                )
            session.commit()


class FrameTeacherLoop(PokedLoop):
    """Runs the frame teacher whenever frames with "of interest" boxes arrived, and once at
    start (those that arrived while the server was down)."""

    def __init__(self, teacher: FrameTeacher, interval_s: float = 2.0) -> None:
        super().__init__("frame teacher", self._judge, interval_s, True)
        self.teacher = teacher

    def _judge(self) -> None:
        start = time.perf_counter()
        report = self.teacher.judge()
        if report.judged:
            log.info(
                "frame teacher: %d frames, %d yes, %d no, %d for a person (%.1f s)",
                report.judged,
                report.yes,
                report.no,
                report.undecided,
                time.perf_counter() - start,
            )
