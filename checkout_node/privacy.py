"""The privacy filter every frame passes before it leaves the lane (alert clips).

Two things are removed, in this order, before a frame is encoded:
  1. the lane's privacy masks: polygons in camera pixels (where customers stand, the card
     terminal) filled black, so nothing of them is ever encoded;
  2. faces: found with dlib's frontal-face detector (HOG + linear SVM, built into the
     ``dlib-bin`` wheel, so nothing is downloaded; OpenCV 5's wheel no longer carries Haar
     cascades) and blurred beyond recognition.

Face boxes are enlarged and each one is also blurred in the frames next to the one it was found
in: the detector misses a face now and then as a head turns, and one clear frame in a clip is
enough to recognise someone. At upsample 1 it finds faces from about 40 pixels across in the
clip frame (80 at 640x480 capture); smaller faces are not found, which the masks are for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

Point = tuple[float, float]
Box = tuple[int, int, int, int]  # x1, y1, x2, y2

FACE_MARGIN = 0.25  # share of the face box added on each side (hair, chin, ears)
NEIGHBOUR_FRAMES = 2  # a face is blurred this many frames before and after it was found
# The detector looks at every second frame: a face found in one is blurred in the frames on
# either side too, so none goes unblurred, for half the cost (the detector is most of it).
DETECT_EVERY = 2


class FaceDetector:
    """dlib's HOG frontal-face detector, created once (it takes ~50 ms to build)."""

    def __init__(self, upsample: int = 1) -> None:
        import dlib  # the lane only pays for it when clips are on

        self._detect: Any = dlib.get_frontal_face_detector()
        self.upsample = upsample

    def faces(self, image: np.ndarray) -> list[Box]:
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        found = self._detect(rgb, self.upsample)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in found]


@dataclass
class PrivacyFilter:
    """Masks (camera pixels) and face blurring for the frames of one lane."""

    masks: list[list[Point]] = field(default_factory=list)
    blur_faces: bool = True
    detector: FaceDetector | None = None

    def __post_init__(self) -> None:
        if self.blur_faces and self.detector is None:
            self.detector = FaceDetector()
        self.faces_blurred = 0  # face boxes blurred, over the lane's life

    def apply(self, frames: list[np.ndarray], scale: float) -> list[np.ndarray]:
        """Filtered copies of ``frames``, which are camera frames resized by ``scale``."""
        masked = [self._masked(frame, scale) for frame in frames]
        if not self.blur_faces or self.detector is None:
            return masked
        last = len(masked) - 1
        found = [
            self.detector.faces(frame) if index % DETECT_EVERY == 0 or index == last else []
            for index, frame in enumerate(masked)
        ]
        for index, frame in enumerate(masked):
            near = found[max(0, index - NEIGHBOUR_FRAMES) : index + NEIGHBOUR_FRAMES + 1]
            for box in {box for boxes in near for box in boxes}:
                _blur(frame, _grown(box, frame.shape))
                self.faces_blurred += 1
        return masked

    def masked_share(self, box: tuple[float, float, float, float], shape: tuple[int, ...]) -> float:
        """The share of ``box`` (frame pixels, a frame of ``shape``) the masks black out."""
        height, width = shape[:2]
        x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
        x2, y2 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
        if x2 <= x1 or y2 <= y1 or not self.masks:
            return 0.0
        covered = np.zeros((y2 - y1, x2 - x1), np.uint8)
        for polygon in self.masks:
            points = np.round(np.asarray(polygon, np.float64) - (x1, y1)).astype(np.int32)
            cv2.fillPoly(covered, [points], 1)
        return float(covered.mean())

    def _masked(self, frame: np.ndarray, scale: float) -> np.ndarray:
        out = frame.copy()
        for polygon in self.masks:
            points = np.round(np.asarray(polygon, np.float64) * scale).astype(np.int32)
            cv2.fillPoly(out, [points], (0, 0, 0))
        return out


def _grown(box: Box, shape: tuple[int, ...]) -> Box:
    x1, y1, x2, y2 = box
    dx, dy = int((x2 - x1) * FACE_MARGIN), int((y2 - y1) * FACE_MARGIN)
    height, width = shape[:2]
    return max(0, x1 - dx), max(0, y1 - dy), min(width, x2 + dx), min(height, y2 + dy)


def _blur(frame: np.ndarray, box: Box) -> None:
    """Pixelate, then blur: a Gaussian blur alone can be partly undone; 6x6 blocks cannot."""
    x1, y1, x2, y2 = box
    if x2 - x1 < 2 or y2 - y1 < 2:
        return
    region = frame[y1:y2, x1:x2]
    small = cv2.resize(region, (6, 6), interpolation=cv2.INTER_AREA)
    blocks = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    frame[y1:y2, x1:x2] = cv2.GaussianBlur(blocks, (0, 0), max(1.0, (x2 - x1) / 12))
