"""A second look at the boxes that could start a track: is this a retail product at all?

The lane's detector learnt what a product is from rendered images. On real photos it scores
real products lower than it scored rendered ones (toy groceries in a pile: best counted near
0.25, not at the tracker's 0.5) and real clutter higher (a shopping cart's wire grid, the shelf
behind it, a sofa's seam). The verifier is an ImageNet classifier, trained on a million real
photos, asked one question per candidate crop: how much of its belief falls on classes that are
not merchandise (places and structures, fences and grids, furniture, vehicles, clothing,
scenery, animals; ``trainer.verifier``). The graph answers that share directly.

It runs only on birth candidates (a detection no track claimed), never on every box of every
frame: at most ``per_frame`` crops a frame, the most confident first, the rest (confident ones
too) waiting for a later frame, so nothing starts a track unlooked at. A box it refused is
remembered where it was, so a wire grid or shelf that stays in view is looked at again only
every ``remember_frames``, while a product it refused as it came into view is looked at again
as soon as it has moved on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from checkout_node.vision.tracker import (
    NOT_PRODUCT_VERDICT,
    PRODUCT_VERDICT,
    UNJUDGED,
    WAITING,
    iou_matrix,
)
from product_db.errors import LaneGuardError

CONTEXT = 0.1  # each side of a box, as a share of its size: a little of what surrounds it
BATCH = 16  # crops a session.run takes at once: a busy still photo's memory stays bounded


class VerifierError(LaneGuardError):
    """The verifier model cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    # At or above this share of the classifier's belief on non-merchandise: not a product.
    # Half: whichever side the classifier leans to, with nothing tuned per camera.
    veto_share: float = 0.5
    # Crops looked at in one frame; the rest wait for the next. One: a look costs about a
    # frame's time on 2 x86 cores (more on a Pi), and on a lane items come into view one at a
    # time.
    per_frame: int = 1
    remember_frames: int = 15  # a refused box refuses what lies on it for this many frames
    remember_iou: float = 0.5
    # A box narrower or shorter than this (pixels) is not looked at: a sliver of an item coming
    # into view is no picture of anything, and its score decides as it did without a look.
    min_side: float = 24.0


def verifier_crops(frame: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """(N, 3, size, size) float32 RGB 0..255: each box with ``CONTEXT`` around it, clipped to
    the frame, resized by area (the crops are mostly shrunk)."""
    height, width = frame.shape[:2]
    crops = np.empty((len(boxes), 3, size, size), np.float32)
    for n, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, np.float64).reshape(-1, 4)):
        mx, my = (x2 - x1) * CONTEXT, (y2 - y1) * CONTEXT
        left, top = int(max(0.0, x1 - mx)), int(max(0.0, y1 - my))
        right, bottom = int(min(width, x2 + mx)), int(min(height, y2 + my))
        if right - left < 1 or bottom - top < 1:
            crops[n] = 0.0  # a box outside the frame: nothing to look at, classed as it comes
            continue
        crop = cv2.resize(frame[top:bottom, left:right], (size, size), interpolation=cv2.INTER_AREA)
        crops[n] = crop[:, :, ::-1].transpose(2, 0, 1)
    return crops


class ProductVerifier:
    """One onnxruntime session: ``not_product(frame, boxes)`` -> each box's share (0..1) of
    the classifier's belief on non-merchandise."""

    def __init__(self, model: str | Path, threads: int = 2) -> None:
        from laneguard.sessions import inference_session

        if threads < 1:
            raise VerifierError(f"{model}: a verifier needs at least one thread, got {threads}")
        try:
            self.session = inference_session(model, threads)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise VerifierError(f"{model}: not a verifier model ({exc})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else []
        # Any number of crops, three colour channels, a square size, one share per crop.
        if (
            len(inputs) != 1
            or len(shape) != 4
            or isinstance(shape[0], int)
            or shape[1] != 3
            or not isinstance(shape[2], int)
            or shape[2] != shape[3]
            or [o.name for o in outputs] != ["not_product"]
            or len(outputs[0].shape) != 1
        ):
            raise VerifierError(
                f"{model}: a verifier takes one (N, 3, S, S) input, N free, and gives "
                "'not_product' (N,)"
            )
        self.input_name = inputs[0].name
        self.size = int(shape[2])
        self.last_inference_s = 0.0

    def not_product(self, frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if len(boxes) == 0:
            self.last_inference_s = 0.0
            return np.zeros(0, np.float32)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        shares = []
        start = time.perf_counter()
        for first in range(0, len(boxes), BATCH):
            crops = verifier_crops(frame, boxes[first : first + BATCH], self.size)
            (share,) = self.session.run(None, {self.input_name: crops})
            shares.append(np.asarray(share, np.float32).reshape(len(crops)))
        self.last_inference_s = time.perf_counter() - start
        return np.concatenate(shares)


@dataclass
class BirthVerifier:
    """The lane's use of the verifier: verdicts for one frame's birth candidates, within a
    per-frame budget, remembering what it refused."""

    verifier: ProductVerifier
    config: VerifierConfig = field(default_factory=VerifierConfig)
    looks: int = 0  # crops classified so far
    seconds: float = 0.0  # spent classifying them
    _refused: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (frame, box)

    def judge(self, frame: np.ndarray, boxes: np.ndarray, frame_index: int) -> np.ndarray:
        """One verdict per box (best candidate first) of frame number ``frame_index`` (the
        camera's count, so a memory lasts as long whatever the detector skips):
        PRODUCT_VERDICT or NOT_PRODUCT_VERDICT; WAITING when the frame's budget ran out before
        it; UNJUDGED for a sliver too small to look at."""
        cfg = self.config
        self._refused = [
            (seen, box) for seen, box in self._refused if frame_index - seen <= cfg.remember_frames
        ]
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        verdicts = np.full(len(boxes), UNJUDGED, np.int8)
        remembered = np.zeros(len(boxes), bool)
        if self._refused and len(boxes):
            overlap = iou_matrix(boxes, np.stack([box for _, box in self._refused]))
            remembered = overlap.max(axis=1) >= cfg.remember_iou
        verdicts[remembered] = NOT_PRODUCT_VERDICT
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        lookable = np.flatnonzero(~remembered & (sides >= cfg.min_side))
        look, later = lookable[: cfg.per_frame], lookable[cfg.per_frame :]
        verdicts[later] = WAITING
        if len(look):
            share = self.verifier.not_product(frame, boxes[look])
            self.looks += len(look)
            self.seconds += self.verifier.last_inference_s
            refused = share >= cfg.veto_share
            verdicts[look] = np.where(refused, NOT_PRODUCT_VERDICT, PRODUCT_VERDICT)
            # Remembered where it was looked at, never carried along: a product refused while
            # half in view is looked at again once it has moved.
            self._refused += [(frame_index, boxes[i]) for i in look[refused]]
        return verdicts
