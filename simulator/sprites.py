"""Sprites (an image with an alpha mask) and the fast compositing the scene renderer needs.

Everything here works on small regions of interest: an item covers a few percent of the frame,
so warping and blending only that region is what keeps rendering above 100 frames/s.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True, slots=True)
class Sprite:
    """A BGR image and its alpha (0-255), same height and width."""

    bgr: np.ndarray
    alpha: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return int(self.bgr.shape[1]), int(self.bgr.shape[0])

    def scaled_to(self, longest_side: int) -> Sprite:
        h, w = self.bgr.shape[:2]
        factor = longest_side / max(h, w)
        size = (max(2, round(w * factor)), max(2, round(h * factor)))
        interp = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
        return Sprite(
            cv2.resize(self.bgr, size, interpolation=interp),
            cv2.resize(self.alpha, size, interpolation=interp),
        )

    def on_background(self, colour: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
        """The sprite flattened onto a plain background (for crops and barcode checks)."""
        a = self.alpha[..., None].astype(np.float32) / 255.0
        bg = np.empty_like(self.bgr)
        bg[:] = colour
        return (self.bgr * a + bg * (1 - a)).astype(np.uint8)


def seeded_rng(*parts: object) -> random.Random:
    """A deterministic RNG for a tuple of values (stable across runs and machines)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a sprite lands in the frame: the warped patch, its alpha and its top-left corner."""

    bgr: np.ndarray
    alpha: np.ndarray
    x0: int
    y0: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Tight box (x1, y1, x2, y2) of the visible alpha, in frame coordinates."""
        ys, xs = np.nonzero(self.alpha > 64)
        if xs.size == 0:
            return (self.x0, self.y0, self.x0, self.y0)
        return (
            self.x0 + int(xs.min()),
            self.y0 + int(ys.min()),
            self.x0 + int(xs.max()) + 1,
            self.y0 + int(ys.max()) + 1,
        )


def place(
    sprite: Sprite,
    centre: tuple[float, float],
    angle_deg: float,
    scale: float,
    frame_size: tuple[int, int],
    motion: tuple[float, float] = (0.0, 0.0),
) -> Placement | None:
    """Rotate/scale ``sprite`` about its centre to ``centre``; clip to the frame.

    ``motion`` (pixels per frame) adds motion blur along the direction of travel. Returns None
    when the sprite is entirely outside the frame.
    """
    w, h = sprite.size
    radius = 0.5 * np.hypot(w, h) * scale + 2
    blur = int(min(15, np.hypot(*motion) * 0.6))
    pad = radius + blur
    fw, fh = frame_size
    x0, y0 = int(np.floor(centre[0] - pad)), int(np.floor(centre[1] - pad))
    x1, y1 = int(np.ceil(centre[0] + pad)), int(np.ceil(centre[1] + pad))
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle_deg, scale)
    matrix[0, 2] += centre[0] - w / 2 - cx0
    matrix[1, 2] += centre[1] - h / 2 - cy0
    size = (cx1 - cx0, cy1 - cy0)
    bgr = cv2.warpAffine(
        sprite.bgr, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    alpha = cv2.warpAffine(
        sprite.alpha,
        matrix,
        size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    if blur >= 2:
        kernel = motion_kernel(blur, float(np.degrees(np.arctan2(motion[1], motion[0]))))
        bgr = cv2.filter2D(bgr, -1, kernel)
        alpha = cv2.filter2D(alpha, -1, kernel)
    return Placement(bgr, alpha, cx0, cy0)


_KERNELS: dict[tuple[int, int], np.ndarray] = {}


def motion_kernel(length: int, angle_deg: float) -> np.ndarray:
    """A normalised line kernel (cached per length and 15-degree step)."""
    key = (length, round(angle_deg / 15.0) * 15)
    kernel = _KERNELS.get(key)
    if kernel is None:
        line = np.zeros((length, length), np.float32)
        line[length // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), key[1], 1.0)
        rotated = cv2.warpAffine(line, rot, (length, length)).astype(np.float32)
        kernel = rotated / max(float(rotated.sum()), 1e-6)
        _KERNELS[key] = kernel
    return kernel


def composite(frame: np.ndarray, placement: Placement) -> np.ndarray:
    """Alpha-blend ``placement`` into ``frame`` in place; returns the boolean coverage mask."""
    h, w = placement.alpha.shape
    roi = frame[placement.y0 : placement.y0 + h, placement.x0 : placement.x0 + w]
    a = placement.alpha
    solid = a >= 250
    partial = (a > 5) & ~solid
    roi[solid] = placement.bgr[solid]
    if partial.any():
        af = a[partial].astype(np.float32)[:, None] / 255.0
        roi[partial] = (placement.bgr[partial] * af + roi[partial] * (1 - af)).astype(np.uint8)
    return a > 127
