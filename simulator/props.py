"""What else crosses the lane: the cashier's hands and non-merchandise (phone, wallet, keys,
bag, receipt). The detector learns them as their own classes so they never count as items."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from simulator.sprites import Sprite, seeded_rng

NON_MERCHANDISE = ("phone", "wallet", "keys", "bag", "receipt")
SKIN_TONES = ((180, 205, 240), (150, 180, 225), (120, 150, 200), (85, 115, 165), (60, 80, 120))


@lru_cache(maxsize=64)
def hand_sprite(variant: int) -> Sprite:
    """A top-down hand (palm and fingers) pointing right, so it can hold an item on its right."""
    rng = seeded_rng("hand", variant)
    tone = np.array(SKIN_TONES[variant % len(SKIN_TONES)], np.float32)
    h, w = 110, 150
    mask = np.zeros((h, w), np.uint8)
    cv2.ellipse(mask, (55, 58), (48, 40), 0, 0, 360, 255, -1, cv2.LINE_AA)  # palm
    cv2.rectangle(mask, (0, 40), (40, 78), 255, -1)  # wrist
    for i, (dy, length) in enumerate(((-28, 58), (-9, 68), (10, 64), (27, 52))):
        y = 58 + dy
        x_end = 90 + length - 40 + rng.randint(-4, 4)
        cv2.line(mask, (70, y), (x_end, y + rng.randint(-3, 3)), 255, 15 - i, cv2.LINE_AA)
        cv2.circle(mask, (x_end, y), (15 - i) // 2, 255, -1, cv2.LINE_AA)
    cv2.line(mask, (60, 95), (95, 104), 255, 16, cv2.LINE_AA)  # thumb
    image = np.empty((h, w, 3), np.float32)
    image[:] = tone
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    image *= (0.8 + 0.25 * (1 - ys**2))[..., None]
    if variant % 3 == 0:  # a sleeve
        cv2.rectangle(image, (0, 30), (22, 88), (rng.randint(20, 200),) * 3, -1)
    return Sprite(np.clip(image, 0, 255).astype(np.uint8), cv2.GaussianBlur(mask, (3, 3), 0))


@lru_cache(maxsize=64)
def non_merchandise_sprite(kind: str, variant: int) -> Sprite:
    """A phone, wallet, keys, shopping bag or receipt, in one of several looks."""
    rng = seeded_rng("nonmerch", kind, variant)
    if kind == "phone":
        h, w = 150, 76
        image = np.full(
            (h, w, 3), rng.choice([(30, 30, 30), (200, 200, 205), (90, 60, 40)]), np.uint8
        )
        screen = (rng.randint(40, 255), rng.randint(40, 255), rng.randint(40, 255))
        cv2.rectangle(image, (5, 10), (w - 6, h - 11), screen, -1)
        for y in range(25, h - 20, 22):
            cv2.rectangle(image, (12, y), (w - 13, y + 12), (255, 255, 255), -1)
        mask = _rounded(h, w, 12)
    elif kind == "wallet":
        h, w = 90, 120
        colour = rng.choice([(30, 50, 90), (20, 20, 20), (40, 30, 110), (60, 90, 40)])
        image = np.full((h, w, 3), colour, np.uint8)
        cv2.rectangle(image, (6, 6), (w - 7, h - 7), tuple(min(255, c + 60) for c in colour), 1)
        cv2.line(image, (0, h // 2), (w, h // 2 - 8), tuple(max(0, c - 15) for c in colour), 3)
        mask = _rounded(h, w, 10)
    elif kind == "keys":
        h, w = 110, 120
        image = np.full((h, w, 3), (170, 170, 175), np.uint8)
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(mask, (35, 35), 26, 255, 5, cv2.LINE_AA)
        for angle in (20, 50, 80):
            rad = np.radians(angle)
            end = (int(35 + 80 * np.cos(rad)), int(35 + 80 * np.sin(rad)))
            cv2.line(mask, (35, 35), end, 255, 12, cv2.LINE_AA)
        image[:, :, 0] = rng.choice([150, 60])  # brass or steel
    elif kind == "bag":
        h, w = 200, 170
        colour = (rng.randint(30, 220), rng.randint(30, 220), rng.randint(30, 220))
        image = np.full((h, w, 3), colour, np.uint8)
        for x in range(0, w, 9):
            cv2.line(image, (x, 0), (x, h), tuple(max(0, c - 20) for c in colour), 1)
        mask = np.zeros((h, w), np.uint8)
        pts = np.array([[10, 40], [w - 10, 40], [w - 4, h - 4], [4, h - 4]], np.int32)
        cv2.fillPoly(mask, [pts], 255, cv2.LINE_AA)
        cv2.ellipse(mask, (w // 2, 42), (45, 38), 0, 180, 360, 255, 9, cv2.LINE_AA)
    else:  # receipt
        h, w = 170, 60
        image = np.full((h, w, 3), (238, 242, 242), np.uint8)
        for y in range(12, h - 10, 9):
            cv2.line(image, (6, y), (rng.randint(25, w - 6), y), (110, 110, 110), 1)
        mask = np.full((h, w), 255, np.uint8)
    return Sprite(image, mask)


def _rounded(h: int, w: int, r: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    cv2.rectangle(mask, (r, 0), (w - r, h), 255, -1)
    cv2.rectangle(mask, (0, r), (w, h - r), 255, -1)
    for cx, cy in ((r, r), (w - r - 1, r), (r, h - r - 1), (w - r - 1, h - r - 1)):
        cv2.circle(mask, (cx, cy), r, 255, -1, cv2.LINE_AA)
    return mask
