"""The frame teacher's detector: a bundle's detector on onnxruntime, asked how sure it is that
a box a lane was unsure of holds an object of the box's label.

The lane runs its detector through checkout_node.vision.detector, which the store server may
not import (the two stand apart; `make lint` holds them to it). The teacher needs less of it:
no tracking and no suppression across classes, only every label's detections, each label
suppressed on its own score. A lane's grouped suppression keeps one box per object and its
best class; the teacher is asked about one label at a time, so a phone that scores 0.5 as a
product and 0.6 as non-merchandise must still show its 0.5 when the question is "product?".
Input preparation is the shared laneguard.detection letterbox, as on the lane and in training.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from laneguard.bundle import BundleError, Manifest, ModelFile
from laneguard.detection import Letterbox, frame_boxes, letterbox

# Scores under this are no detection at all: far below any threshold a store would set, and it
# keeps the few thousand anchors of a frame out of the suppression.
SCORE_FLOOR = 0.01
SUPPRESS_IOU = 0.5  # as the lane's detector: boxes overlapping more are the same object


def teacher_model_file(manifest: Manifest) -> ModelFile:
    """The bundle's detector with the largest input (more pixels per item: small and far items
    are where a lane's detector is unsure), float over int8 at the same size (int8 loses a
    little accuracy to gain a speed the store does not need)."""
    detectors = [m for m in manifest.models if m.role == "detector"]
    if not detectors:
        raise BundleError(f"bundle {manifest.version} has no detector")
    return max(detectors, key=lambda m: (m.input_size, m.precision == "fp32"))


@dataclass(frozen=True, slots=True)
class LabelDetections:
    """One label's detections in frame pixels: boxes (N, 4) as x1, y1, x2, y2, scores (N,),
    strongest first."""

    boxes: np.ndarray
    scores: np.ndarray

    def best_overlapping(self, box: Sequence[float], min_iou: float) -> float:
        """The highest score among the detections overlapping ``box`` by at least ``min_iou``
        (0.0 when none does: the teacher sees nothing of this label there)."""
        if len(self.scores) == 0:
            return 0.0
        overlap = iou(np.asarray(box, np.float32), self.boxes)
        near = self.scores[overlap >= min_iou]
        return float(near.max()) if len(near) else 0.0


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Intersection over union of one box (4,) with each of ``boxes`` (N, 4)."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-6), np.float32)


def decode_labels(
    raw: np.ndarray,
    classes: Sequence[str],
    scale: float,
    pad_x: float,
    pad_y: float,
    width: int,
    height: int,
    floor: float = SCORE_FLOOR,
    suppress_iou: float = SUPPRESS_IOU,
) -> dict[str, LabelDetections]:
    """The detector's output (4 + C, A): centre x, centre y, width, height in input pixels and
    each class's score (already a sigmoid), as each label's suppressed detections in frame
    pixels."""
    all_boxes = frame_boxes(raw[:4], Letterbox(scale, pad_x, pad_y), width, height)
    out: dict[str, LabelDetections] = {}
    for index, label in enumerate(classes):
        scores = raw[4 + index]
        keep = scores >= floor
        boxes, kept = all_boxes[keep], scores[keep].astype(np.float32)
        if len(kept) == 0:
            out[label] = LabelDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
            continue
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        picked = cv2.dnn.NMSBoxes(xywh.tolist(), kept.tolist(), floor, suppress_iou)
        order = np.asarray(picked, dtype=np.int64).reshape(-1)  # strongest first
        out[label] = LabelDetections(boxes[order], kept[order])
    return out


class TeacherDetector:
    """One onnxruntime session over a bundle's detector; ``detect(frame)`` gives each label's
    detections. On the CPU: the store server has no accelerator to count on, and a frame a
    minute per lane is little work."""

    def __init__(self, model: Path, classes: Sequence[str], threads: int = 1) -> None:
        from laneguard.sessions import inference_session

        # One thread by default: the teacher works in the background of a server that also
        # answers lanes and consoles, so it takes what is left rather than competing for it.
        self.session = inference_session(model, threads)
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        self.size = int(spec.shape[-1])
        output = self.session.get_outputs()[0].shape
        if len(output) != 3 or output[1] != 4 + len(classes):
            raise BundleError(
                f"{model}: output shape {output}, expected (1, {4 + len(classes)}, anchors) for "
                f"the classes {list(classes)}"
            )
        self.classes = list(classes)
        self.last_inference_s = 0.0

    def detect(self, frame: np.ndarray) -> dict[str, LabelDetections]:
        tensor, fit = letterbox(frame, self.size)
        start = time.perf_counter()
        raw = self.session.run(None, {self.input_name: tensor})[0][0]
        self.last_inference_s = time.perf_counter() - start
        height, width = frame.shape[:2]
        return decode_labels(raw, self.classes, fit.scale, fit.pad_x, fit.pad_y, width, height)
