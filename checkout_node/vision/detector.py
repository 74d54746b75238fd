"""Detector on onnxruntime: letterbox, one session.run, decode, NMS.

The model is the bundle's class-agnostic YOLO detector (product / hand / non_merchandise),
exported without NMS: its output is (1, 4 + classes, anchors) with boxes as centre x, centre y,
width, height in input pixels and per-class scores already passed through a sigmoid.

Suppression works on groups of classes, not classes: a phone or a bag often scores as a product
in one frame and as non-merchandise in the next, and per-class NMS would keep both boxes on the
one object, which then becomes two tracks. Each kept box carries every class's score, so the
tracker can decide what an object is from its whole lifetime. A small detector also fires on
parts of an item (a label, one half of a box) next to the whole item; a box lying almost
entirely inside a stronger box of its group is dropped as such a part.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from laneguard.bundle import BundleError
from laneguard.detection import Letterbox, frame_boxes, letterbox

CONTAINED_SHARE = 0.6  # a box this much inside a stronger one of its group is a part of it

PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


def choose_providers(available: Sequence[str] | None = None) -> list[str]:
    """The execution providers to use, best first, from those this onnxruntime build has."""
    import onnxruntime as ort

    present = set(available if available is not None else ort.get_available_providers())
    chosen = [p for p in PROVIDER_PREFERENCE if p in present]
    return chosen or ["CPUExecutionProvider"]


@dataclass(frozen=True, slots=True)
class Detections:
    """Boxes (N, 4) as x1, y1, x2, y2 in frame pixels, scores (N,), class ids (N,) and every
    class's score for each box (N, C)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    class_scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def of_classes(self, *class_ids: int) -> Detections:
        keep = self.classes == class_ids[0]
        for other in class_ids[1:]:
            keep |= self.classes == other
        return Detections(
            self.boxes[keep], self.scores[keep], self.classes[keep], self.class_scores[keep]
        )

    @classmethod
    def empty(cls, n_classes: int = 0) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.int32),
            np.zeros((0, n_classes), np.float32),
        )


class Detector:
    """One onnxruntime session; ``detect(frame)`` returns Detections in frame coordinates."""

    def __init__(
        self,
        model: str | Path,
        threads: int = 2,
        providers: Sequence[str] | None = None,
        confidence: float = 0.25,
        iou: float = 0.5,
        nms_groups: Sequence[int] | None = None,
    ) -> None:
        from laneguard.sessions import inference_session

        self.providers = list(providers or choose_providers())
        self.session = inference_session(model, threads, self.providers)
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        self.size = int(spec.shape[-1])
        output = self.session.get_outputs()[0].shape
        if len(output) != 3 or not isinstance(output[1], int) or output[1] < 5:
            raise BundleError(
                f"{model}: not a detector: output shape {output}, expected (1, 4 + classes, "
                "anchors)"
            )
        self.confidence = confidence
        self.iou = iou
        self.nms_groups = None if nms_groups is None else np.asarray(nms_groups, np.int32)
        self.last_inference_s = 0.0

    def detect(self, frame: np.ndarray) -> Detections:
        tensor, fit = letterbox(frame, self.size)
        start = time.perf_counter()
        output = self.session.run(None, {self.input_name: tensor})[0]
        self.last_inference_s = time.perf_counter() - start
        return decode(
            output[0],
            fit.scale,
            fit.pad_x,
            fit.pad_y,
            frame.shape[1],
            frame.shape[0],
            self.confidence,
            self.iou,
            self.nms_groups,
        )


def decode(
    raw: np.ndarray,
    scale: float,
    pad_x: float,
    pad_y: float,
    width: int,
    height: int,
    confidence: float,
    iou: float,
    nms_groups: np.ndarray | None = None,
    contained: float = CONTAINED_SHARE,
) -> Detections:
    """(4 + C, A) model output -> detections in frame coordinates, suppressed within groups.

    ``nms_groups[c]`` is the suppression group of class c (default: each class its own).
    """
    scores_all = raw[4:]
    classes = scores_all.argmax(axis=0)
    scores = scores_all[classes, np.arange(raw.shape[1])]
    keep = scores >= confidence
    if not keep.any():
        return Detections.empty(scores_all.shape[0])
    scores, classes = scores[keep].astype(np.float32), classes[keep].astype(np.int32)
    class_scores = scores_all[:, keep].T.astype(np.float32)
    groups = classes if nms_groups is None else nms_groups[classes]
    boxes = frame_boxes(raw[:4, keep], Letterbox(scale, pad_x, pad_y), width, height)
    # Group-wise NMS in one call: offset each group far apart so boxes never suppress across.
    offset = groups[:, None].astype(np.float32) * (max(width, height) + 1)
    shifted = boxes + offset
    xywh = np.concatenate([shifted[:, :2], shifted[:, 2:] - shifted[:, :2]], axis=1)
    picked = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), confidence, iou)
    index = np.asarray(picked, dtype=np.int64).reshape(-1)  # best score first
    index = index[~contained_in_stronger(boxes[index], groups[index], contained)]
    return Detections(boxes[index], scores[index], classes[index], class_scores[index])


def contained_in_stronger(boxes: np.ndarray, groups: np.ndarray, share: float) -> np.ndarray:
    """Mask of boxes (ordered strongest first) that lie, by at least ``share`` of their own
    area, inside a stronger kept box of the same group."""
    n = len(boxes)
    dropped = np.zeros(n, bool)
    if n < 2:
        return dropped
    inside = (inside_share(boxes, boxes) >= share) & (groups[:, None] == groups[None, :])
    for i in range(1, n):
        stronger = inside[i, :i] & ~dropped[:i]
        dropped[i] = bool(stronger.any())
    return dropped


def inside_share(inner: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """(A, B): the share of each ``inner`` box's area (A, 4) lying inside each ``outer`` box
    (B, 4), boxes as x1, y1, x2, y2."""
    x1 = np.maximum(inner[:, None, 0], outer[None, :, 0])
    y1 = np.maximum(inner[:, None, 1], outer[None, :, 1])
    x2 = np.minimum(inner[:, None, 2], outer[None, :, 2])
    y2 = np.minimum(inner[:, None, 3], outer[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = np.maximum((inner[:, 2] - inner[:, 0]) * (inner[:, 3] - inner[:, 1]), 1e-6)
    return inter / area[:, None]
