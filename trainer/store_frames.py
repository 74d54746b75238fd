"""The slow path's detection data from the store's own cameras (issue #35).

Lanes send frames with boxes (checkout_node.frame_keeper). What a frame may teach:
- ``honest`` frames: every box of a track the transaction accounted for is a true box,
  labelled by its track's class; the frame is a labelled image of this store's camera;
- ``not_an_item`` frames: the cashier said the box was not an item; a till user's word alone
  could make the detector unlearn what they let through, so that box is decided like an
  unsure one (the store's frame teacher or a person) before the frame teaches;
- "of interest" boxes (between T2 and T1, or a product track no scan accounted for) are
  unknown until the store's frame teacher or a person gives them a verdict
  (store_server.frame_review): "yes" makes a box a label, "no" leaves it as it is (nothing of
  its label there), and one still undecided is painted the letterbox grey before training, so
  the detector is neither taught that it is a product nor that it is nothing. Frames sent only
  for their "of interest" boxes teach once every such box is decided.

The held-out split is by transaction and time, per lane: each lane's newest transactions are
the frames the gate judges a candidate on, so a detector that got worse on one camera is
refused even when the store's other lanes got better.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.files import private_dir
from store_server.frame_review import DECIDED_KINDS
from store_server.media import MediaStore
from store_server.models import DetectionFrame, TransactionRecord
from trainer.detector import CLASS_NAMES

CLASS_IDS = {name: index for index, name in enumerate(CLASS_NAMES)}
TEACHING_REASONS = ("honest",)  # labelled by the checkout itself
DECIDED = ("teacher", "reviewed")  # any frame whose unsure boxes all have a verdict
# A scan no item was seen for: the missed item is on the frame with no box at all, so the frame
# would teach it as background; it waits for a person to draw the box (not built yet).
NEVER_TEACHING = ("unseen_scan",)
IGNORE_GREY = (114, 114, 114)  # ultralytics' letterbox colour: what "no information" looks like
MOSTLY_INSIDE = 0.5  # an unknown box this much inside a labelled one is left alone


@dataclass(frozen=True)
class StoreFrame:
    """One kept frame: its file, where it came from, and its boxes (laneguard.wire.FrameBox
    fields, in the frame's pixels)."""

    frame_id: int
    lane_id: str
    transaction_id: str
    captured_at: datetime
    reason: str
    image: Path
    width: int
    height: int
    boxes: tuple[dict[str, Any], ...]

    @property
    def transaction(self) -> tuple[str, str]:
        return (self.lane_id, self.transaction_id)

    def labelled(self) -> list[tuple[int, tuple[float, float, float, float]]]:
        """(class id, box) of every box taken as true: a track's, or an unknown one the
        store's teacher or a person said yes to."""
        return [
            (CLASS_IDS[b["label"]], tuple(b["box"]))
            for b in self.boxes
            if b["label"] in CLASS_IDS
            and (b["kind"] == "track" or (b["kind"] in DECIDED_KINDS and b.get("verdict") == "yes"))
        ]

    def unknown(self) -> list[tuple[float, float, float, float]]:
        """Boxes nobody has decided: painted grey. One given "no" stays as it is (nothing of
        its label there)."""
        return [
            tuple(b["box"])
            for b in self.boxes
            if b["kind"] in DECIDED_KINDS and b.get("verdict") is None
        ]


@dataclass
class FrameSplit:
    """Training frames, and each lane's held-out newest transactions' frames."""

    train: list[StoreFrame]
    test: dict[str, list[StoreFrame]]
    stats: dict[str, Any] = field(default_factory=dict)


def split_frames(frames: Sequence[StoreFrame], test_fraction: float = 0.25) -> FrameSplit:
    """Per lane: the newest ``test_fraction`` of its transactions held out whole (at least one
    when the lane has two or more), the rest for training."""
    by_lane: dict[str, list[StoreFrame]] = defaultdict(list)
    for frame in frames:
        by_lane[frame.lane_id].append(frame)
    train: list[StoreFrame] = []
    test: dict[str, list[StoreFrame]] = {}
    for lane, lane_frames in sorted(by_lane.items()):
        first: dict[tuple[str, str], datetime] = {}
        for frame in lane_frames:
            first[frame.transaction] = min(
                first.get(frame.transaction, frame.captured_at), frame.captured_at
            )
        ordered = sorted(first, key=lambda t: (first[t], t))
        n_test = max(1, round(len(ordered) * test_fraction)) if len(ordered) >= 2 else 0
        held = set(ordered[len(ordered) - n_test :])
        test_frames = [f for f in lane_frames if f.transaction in held]
        if test_frames:
            test[lane] = test_frames
        train += [f for f in lane_frames if f.transaction not in held]
    stats = {
        "frames": len(frames),
        "train_frames": len(train),
        "test_frames": {lane: len(v) for lane, v in test.items()},
        "train_boxes": sum(len(f.labelled()) for f in train),
    }
    return FrameSplit(train, test, stats)


def write_yolo(frames: Iterable[StoreFrame], folder: Path, split: str, tag: str = "") -> int:
    """Each frame into ``folder/images/<split>`` and its labels into ``folder/labels/<split>``
    (YOLO text: class cx cy w h, normalised), unknown boxes painted grey; returns how many.
    ``tag`` makes the names of a second copy (a frame repeated) differ."""
    # Copies of camera frames: as private as the store's own media (retention cannot see them).
    images, labels = private_dir(folder / "images" / split), private_dir(folder / "labels" / split)
    written = 0
    for frame in frames:
        image = cv2.imread(str(frame.image), cv2.IMREAD_COLOR)
        if image is None:
            continue
        height, width = image.shape[:2]
        labelled = frame.labelled()
        for box in frame.unknown():
            if not any(_inside_share(box, known) >= MOSTLY_INSIDE for _, known in labelled):
                x1, y1, x2, y2 = (round(v) for v in box)
                image[max(0, y1) : y2, max(0, x1) : x2] = IGNORE_GREY
        name = f"store_{frame.lane_id}_{frame.frame_id:08d}{tag}"
        cv2.imwrite(str(images / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
        os.chmod(images / f"{name}.jpg", 0o600)
        lines = [_yolo_line(cls, box, width, height) for cls, box in labelled]
        (labels / f"{name}.txt").write_text("".join(f"{line}\n" for line in lines))
        written += 1
    return written


def write_test_set(frames: Iterable[StoreFrame], folder: Path) -> Path:
    """A YOLO set whose validation split is ``frames`` (what ``evaluate_detector`` reads);
    returns its data.yaml."""
    if folder.exists():
        shutil.rmtree(folder)
    write_yolo(frames, folder, "val")
    (folder / "images" / "train").mkdir(parents=True, exist_ok=True)
    names = "\n".join(f"  {v}: {k}" for k, v in CLASS_IDS.items())
    data = folder / "data.yaml"
    data.write_text(
        f"path: {folder.resolve()}\ntrain: images/val\nval: images/val\nnames:\n{names}\n"
    )
    return data


def frames_from_rows(rows: Iterable[Any], image_path: Any) -> list[StoreFrame]:
    """StoreFrames from detection_frame rows (``image_path``: media name -> Path); rows whose
    file is gone are left out."""
    out = []
    for row in rows:
        path = image_path(row.image)
        if row.id is None or not Path(path).is_file():
            continue
        boxes = row.boxes if isinstance(row.boxes, list) else json.loads(row.boxes)
        out.append(
            StoreFrame(
                row.id,
                row.lane_id,
                row.transaction_id,
                row.captured_at,
                row.reason,
                Path(path),
                row.width,
                row.height,
                tuple(boxes),
            )
        )
    return out


def _inside_share(box: Sequence[float], other: Sequence[float]) -> float:
    """Share of ``box``'s area inside ``other``."""
    w = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
    h = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
    area = max(1e-6, (box[2] - box[0]) * (box[3] - box[1]))
    return w * h / area


def _yolo_line(cls: int, box: Sequence[float], width: int, height: int) -> str:
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = np.clip([x1, x2], 0, width)
    y1, y2 = np.clip([y1, y2], 0, height)
    cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
    return f"{cls} {cx:.6f} {cy:.6f} {(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"


def harvested_frames(engine: Engine, media: MediaStore) -> list[StoreFrame]:
    """The store's frames that may teach the detector, oldest first: sent for a reason that
    labels them (``TEACHING_REASONS``), not rejected in review, and, as for crops, vouched for
    by the store's own record: an honest frame only when the store holds that lane's
    transaction of that id as honest, any other only when it holds the transaction at all."""
    with Session(engine) as session:
        rows = list(
            session.exec(
                select(DetectionFrame)
                .where(
                    col(DetectionFrame.reason).in_(TEACHING_REASONS)
                    | col(DetectionFrame.review).in_(DECIDED)
                )
                .where(col(DetectionFrame.review) != "rejected")
                .where(col(DetectionFrame.reason).not_in(NEVER_TEACHING))
                .order_by(col(DetectionFrame.captured_at), col(DetectionFrame.id))
            )
        )
        ids = {row.transaction_id for row in rows}
        honest = {
            (t.lane_id, t.transaction_id): t.honest
            for t in session.exec(
                select(TransactionRecord).where(col(TransactionRecord.transaction_id).in_(ids))
            )
        }
    vouched = [
        row
        for row in rows
        if (row.lane_id, row.transaction_id) in honest
        and (row.reason != "honest" or honest[(row.lane_id, row.transaction_id)])
    ]
    return frames_from_rows(vouched, media.path)
