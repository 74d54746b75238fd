"""Detector on onnxruntime: letterbox, one session.run, decode, NMS.

The model is the bundle's class-agnostic YOLO detector (product / hand / non_merchandise),
exported without NMS: its output is (1, 4 + classes, anchors) with boxes as centre x, centre y,
width, height in input pixels and per-class scores already passed through a sigmoid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from laneguard.detection import letterbox

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
    """Boxes (N, 4) as x1, y1, x2, y2 in frame pixels, scores (N,), class ids (N,)."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def of_class(self, class_id: int) -> Detections:
        keep = self.classes == class_id
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))


class Detector:
    """One onnxruntime session; ``detect(frame)`` returns Detections in frame coordinates."""

    def __init__(
        self,
        model: str | Path,
        threads: int = 2,
        providers: Sequence[str] | None = None,
        confidence: float = 0.25,
        iou: float = 0.5,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.providers = list(providers or choose_providers())
        self.session = ort.InferenceSession(str(model), options, providers=self.providers)
        spec = self.session.get_inputs()[0]
        self.input_name = spec.name
        self.size = int(spec.shape[-1])
        self.confidence = confidence
        self.iou = iou
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
) -> Detections:
    """(4 + C, A) model output -> class-wise NMS'd detections in frame coordinates."""
    scores_all = raw[4:]
    classes = scores_all.argmax(axis=0)
    scores = scores_all[classes, np.arange(raw.shape[1])]
    keep = scores >= confidence
    if not keep.any():
        return Detections.empty()
    cx, cy, w, h = raw[0, keep], raw[1, keep], raw[2, keep], raw[3, keep]
    scores, classes = scores[keep].astype(np.float32), classes[keep].astype(np.int32)
    x1 = np.clip((cx - w / 2 - pad_x) / scale, 0, width)
    y1 = np.clip((cy - h / 2 - pad_y) / scale, 0, height)
    x2 = np.clip((cx + w / 2 - pad_x) / scale, 0, width)
    y2 = np.clip((cy + h / 2 - pad_y) / scale, 0, height)
    boxes = np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
    # Class-wise NMS in one call: offset each class far apart so boxes never suppress across.
    offset = classes[:, None].astype(np.float32) * (max(width, height) + 1)
    shifted = boxes + offset
    xywh = np.concatenate([shifted[:, :2], shifted[:, 2:] - shifted[:, :2]], axis=1)
    picked = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), confidence, iou)
    index = np.asarray(picked, dtype=np.int64).reshape(-1)
    return Detections(boxes[index], scores[index], classes[index])
