"""Loose produce: real photos when the grocery-produce folder is given, a synthetic look otherwise.

The real photos (../shared/data/grocery-produce) show produce in the hand or on the shelf, with
no boxes or masks. The simulator takes the central part of a photo and masks it with a soft,
irregular blob, so the item that crosses the lane carries real colour and texture of that class.
Without the folder, each PLU gets a stable synthetic look (a shaded blob in the class's colours).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from random import Random

import cv2
import numpy as np

from product_db import PRODUCE_CLASSES
from product_db.errors import LaneGuardError
from simulator.sprites import Sprite, seeded_rng

SPLITS = ("train", "val", "test")


class ProduceDataError(LaneGuardError, ValueError):
    """The produce photo folder is missing or not in the expected layout."""


def produce_class_map(path: Path = PRODUCE_CLASSES) -> dict[str, str]:
    """Photo-set class folder name -> PLU code."""
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["image_class"]: row["plu"] for row in csv.DictReader(handle)}


@dataclass
class ProducePhotos:
    """The real produce photos, indexed by PLU and split (images/<split>/<class>/*.jpg)."""

    root: Path
    by_plu: dict[str, dict[str, list[Path]]] = field(default_factory=dict)

    @classmethod
    def open(cls, root: str | Path) -> ProducePhotos:
        folder = Path(root)
        images = folder / "images"
        if not images.is_dir():
            raise ProduceDataError(
                f"{folder}: no images/ folder; expected the grocery-produce layout "
                "images/<split>/<class>/*.jpg"
            )
        photos = cls(folder)
        for image_class, plu in produce_class_map().items():
            splits = {s: sorted((images / s / image_class).glob("*.jpg")) for s in SPLITS}
            if any(splits.values()):
                photos.by_plu[plu] = splits
        if not photos.by_plu:
            raise ProduceDataError(f"{folder}: none of the 50 produce classes has photos")
        return photos

    def pick(self, plu: str, rng: Random, splits: tuple[str, ...] = ("train",)) -> Path | None:
        candidates = [p for s in splits for p in self.by_plu.get(plu, {}).get(s, [])]
        return rng.choice(candidates) if candidates else None


def _blob_mask(h: int, w: int, rng: Random, roughness: float = 0.12) -> np.ndarray:
    """A soft irregular blob filling most of an h x w box."""
    n = 24
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    wobble = 1 + roughness * np.array([rng.uniform(-1, 1) for _ in range(n)])
    wobble = np.convolve(np.r_[wobble[-2:], wobble, wobble[:2]], np.ones(5) / 5, "valid")
    xs = w / 2 + (w / 2 - 3) * wobble * np.cos(angles)
    ys = h / 2 + (h / 2 - 3) * wobble * np.sin(angles)
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.stack([xs, ys], 1).astype(np.int32)], 255, cv2.LINE_AA)
    return cv2.GaussianBlur(mask, (5, 5), 0)


@lru_cache(maxsize=256)
def photo_sprite(path: Path, variant: int) -> Sprite:
    """A real photo's central region masked as one item; ``variant`` varies crop and outline."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ProduceDataError(f"{path}: cannot be read as an image")
    rng = seeded_rng("photo", path.name, variant)
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.5, 0.75))
    aspect = rng.uniform(0.7, 1.3)
    ch, cw = min(h, int(side * aspect)), min(w, int(side / aspect))
    y0 = (h - ch) // 2 + int(rng.uniform(-0.1, 0.1) * (h - ch))
    x0 = (w - cw) // 2 + int(rng.uniform(-0.1, 0.1) * (w - cw))
    crop = np.ascontiguousarray(image[y0 : y0 + ch, x0 : x0 + cw])
    return Sprite(crop, _blob_mask(ch, cw, rng))


@lru_cache(maxsize=128)
def synthetic_sprite(plu: str, variant: int) -> Sprite:
    """A stable synthetic look for a PLU: shaded blob, speckle texture, highlight, stem."""
    look = seeded_rng("produce-look", plu)
    rng = seeded_rng("produce-item", plu, variant)
    hue = look.random() * 180
    base = np.array([[[hue, look.uniform(120, 230), look.uniform(120, 230)]]], np.uint8)
    colour = cv2.cvtColor(base, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
    elongation = look.uniform(0.5, 1.0)
    size = int(rng.uniform(110, 150))
    h, w = int(size * elongation), size
    mask = _blob_mask(h, w, rng, roughness=look.uniform(0.03, 0.2))
    ys = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    xs = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    shade = 0.55 + 0.5 * np.clip(1 - (xs**2 + ys**2), 0, 1)
    speckle_rng = np.random.default_rng(int(look.random() * 2**31))
    speckle = speckle_rng.normal(1.0, look.uniform(0.02, 0.12), (h, w)).astype(np.float32)
    image = colour[None, None, :] * (shade * speckle)[..., None]
    highlight = np.exp(-(((xs + 0.35) ** 2) + (ys + 0.35) ** 2) * 12)[..., None] * 90
    image = np.clip(image + highlight, 0, 255).astype(np.uint8)
    if look.random() < 0.6:
        cv2.line(image, (w // 2, 2), (w // 2 + rng.randint(-6, 6), h // 6), (30, 70, 60), 3)
    return Sprite(image, mask)


def produce_sprite(
    plu: str, rng: Random, photos: ProducePhotos | None, splits: tuple[str, ...] = ("train",)
) -> Sprite:
    """One produce item of ``plu``: a real photo when available, else the synthetic look."""
    variant = rng.randrange(4)
    if photos is not None:
        path = photos.pick(plu, rng, splits)
        if path is not None:
            return photo_sprite(path, variant)
    return synthetic_sprite(plu, variant)
