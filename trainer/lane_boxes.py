"""The detector judged as a lane uses it: boxes of its own at the tracker's new-track score.

mAP50 averages precision over every score, so a candidate can raise it while losing boxes at
the one score a lane starts tracks at. Issue #35's store-camera bench measured exactly that: a
fine-tuned detector's mAP50 on the lane's held-out frames rose from 0.601 to 0.709 while the
products it boxed at 0.5 fell from 0.785 to 0.677, and the gate let it through. A lane counts an
item when a detection of its own starts a track, so the gate also counts, at that score:
- ``own_box_recall``: the true boxes that get a detection of their own (IoU at least 0.5, one
  detection per box, best overlap first, as ``laneguard eval scenes`` scores real photos);
- ``precision``: the share of detections that are some true box's own. A detection lying
  mostly inside a box nobody has decided yet (trainer.store_frames: unknown, and not itself
  mostly inside a labelled box, as ``write_yolo`` paints them) is neither right nor wrong and
  is left out.
A kept frame whose file can no longer be read (retention, a damaged file) is left out and
counted, as ``write_yolo`` leaves it out of the mAP50 set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from checkout_node.vision.detector import inside_share
from checkout_node.vision.detectors import make_detector
from checkout_node.vision.pipeline import PRODUCT, lane_detector_config
from checkout_node.vision.tracker import TrackerConfig, greedy_assignment, iou_matrix
from product_db.errors import LaneGuardError
from trainer.store_frames import MOSTLY_INSIDE, StoreFrame

MATCH_IOU = 0.5  # a detection is a product's own box at this IoU or more
UNDECIDED_INSIDE = 0.5  # a detection this much inside an undecided box is not scored
YOLO_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class LaneBoxError(LaneGuardError, ValueError):
    """An image or label file the count cannot use; the message names it."""


@dataclass(frozen=True)
class ScoredImage:
    """One image and what is true on it, in its own pixels (x1, y1, x2, y2)."""

    image: Path
    products: np.ndarray  # (M, 4) true product boxes
    undecided: np.ndarray  # (K, 4) boxes nobody has decided: detections inside are not scored


@dataclass(frozen=True)
class LaneBoxCount:
    """Totals over a set of images at one score."""

    images: int
    products: int
    detections: int  # scored detections (those inside undecided boxes left out)
    own: int
    unreadable: int = 0  # images that could not be read, left out

    def summary(self) -> dict[str, float | int | None]:
        return {
            "images": self.images,
            "unreadable": self.unreadable,
            "products": self.products,
            "detections": self.detections,
            "own_box_recall": round(self.own / self.products, 4) if self.products else None,
            "precision": round(self.own / self.detections, 4) if self.detections else None,
        }


def _boxes(rows: Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray(rows, np.float64).reshape(-1, 4)


def from_store_frames(frames: Iterable[StoreFrame]) -> list[ScoredImage]:
    """A lane's kept frames: its product tracks (and boxes given a yes) are the truth; boxes
    nobody has decided are not scored unless they lie mostly inside a labelled one (which
    ``write_yolo`` leaves unpainted too)."""
    scored = []
    for frame in frames:
        labelled = _boxes([box for _, box in frame.labelled()])
        undecided = _boxes(frame.unknown())
        if len(undecided) and len(labelled):
            undecided = undecided[inside_share(undecided, labelled).max(axis=1) < MOSTLY_INSIDE]
        products = _boxes([box for cls, box in frame.labelled() if cls == PRODUCT])
        scored.append(ScoredImage(frame.image, products, undecided))
    return scored


def from_yolo_split(images_dir: Path, labels_dir: Path) -> list[ScoredImage]:
    """A YOLO split (the simulator's test scenes): class 0 rows of each label file are the
    products; an image without a label file has none."""
    scored = []
    for image in sorted(p for p in images_dir.iterdir() if p.suffix.lower() in YOLO_IMAGE_SUFFIXES):
        shape = cv2.imread(str(image), cv2.IMREAD_UNCHANGED)
        if shape is None:
            raise LaneBoxError(f"{image}: not an image")
        height, width = shape.shape[:2]
        label = labels_dir / f"{image.stem}.txt"
        rows = []
        if label.exists():
            for number, line in enumerate(label.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    if len(fields) != 5:
                        raise ValueError
                    cls, cx, cy, w, h = int(fields[0]), *map(float, fields[1:])
                except ValueError:
                    raise LaneBoxError(
                        f"{label}:{number}: expected 'class cx cy w h' (an integer class and "
                        f"four numbers), got {line[:80]!r}"
                    ) from None
                if cls == PRODUCT:
                    rows.append(
                        [
                            (cx - w / 2) * width,
                            (cy - h / 2) * height,
                            (cx + w / 2) * width,
                            (cy + h / 2) * height,
                        ]
                    )
        scored.append(ScoredImage(image, _boxes(rows), _boxes([])))
    return scored


def count_lane_boxes(
    model: Path, images: Sequence[ScoredImage], threads: int = 2, score: float | None = None
) -> LaneBoxCount:
    """Run ``model`` as the lane does (its own input size, its NMS) on each image and count
    at ``score`` (the tracker's new-track score when ``None``)."""
    minimum = TrackerConfig().new_track_score if score is None else score
    detector = make_detector(model, lane_detector_config(threads))
    products = detections_total = own = unreadable = 0
    for item in images:
        frame = cv2.imread(str(item.image), cv2.IMREAD_COLOR)
        if frame is None:
            unreadable += 1
            continue
        found = detector.detect(frame)
        keep = (found.classes == PRODUCT) & (found.scores >= minimum)
        boxes = np.asarray(found.boxes[keep], np.float64).reshape(-1, 4)
        pairs = _own_pairs(boxes, item.products)
        unscored = 0
        if len(boxes) and len(item.undecided):
            mine = {d for d, _ in pairs}
            inside = inside_share(boxes, item.undecided).max(axis=1)
            unscored = sum(
                1 for i in range(len(boxes)) if i not in mine and inside[i] >= UNDECIDED_INSIDE
            )
        products += len(item.products)
        detections_total += len(boxes) - unscored
        own += len(pairs)
    return LaneBoxCount(len(images) - unreadable, products, detections_total, own, unreadable)


def _own_pairs(detections: np.ndarray, truth: np.ndarray) -> list[tuple[int, int]]:
    if len(detections) == 0 or len(truth) == 0:
        return []
    return greedy_assignment(iou_matrix(detections, truth), MATCH_IOU)
