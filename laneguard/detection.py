"""Detector input preparation shared by the lane and the trainer: ultralytics-style letterbox.

The detector was trained on letterboxed images (aspect kept, grey 114 padding, centred), so
every consumer of its ONNX file must prepare frames exactly this way.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How a frame was fitted into the square input: to map boxes back to the frame."""

    scale: float
    pad_x: float
    pad_y: float


def letterbox(frame: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """BGR frame -> (float32 NCHW RGB in 0..1 of size x size, the transform used)."""
    h, w = frame.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = round(h * scale), round(w * scale)
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (size - nw) / 2, (size - nh) / 2
    top, left = round(pad_y - 0.1), round(pad_x - 0.1)
    canvas = cv2.copyMakeBorder(
        resized,
        top,
        size - nh - top,
        left,
        size - nw - left,
        cv2.BORDER_CONSTANT,
        value=(PAD_VALUE, PAD_VALUE, PAD_VALUE),
    )
    # One OpenCV call for BGR->RGB, HWC->NCHW and 0..1 scaling: a third of the numpy cost.
    tensor = cv2.dnn.blobFromImage(canvas, 1 / 255.0, swapRB=True)
    return tensor, Letterbox(scale, left, top)


def frame_boxes(centre_boxes: np.ndarray, fit: Letterbox, width: int, height: int) -> np.ndarray:
    """The detector's boxes (4, N: centre x, centre y, width, height in input pixels) as
    (N, 4) x1, y1, x2, y2 in the frame's pixels, clipped to the frame: the inverse of
    ``letterbox``, for every reader of the detector's output (the lane, the store's teacher)."""
    cx, cy, w, h = centre_boxes[0], centre_boxes[1], centre_boxes[2], centre_boxes[3]
    x1 = np.clip((cx - w / 2 - fit.pad_x) / fit.scale, 0, width)
    y1 = np.clip((cy - h / 2 - fit.pad_y) / fit.scale, 0, height)
    x2 = np.clip((cx + w / 2 - fit.pad_x) / fit.scale, 0, width)
    y2 = np.clip((cy + h / 2 - fit.pad_y) / fit.scale, 0, height)
    return np.stack([x1, y1, x2, y2], axis=1).astype(np.float32)
