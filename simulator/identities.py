"""Procedurally printed products as embedder identities (issue #34): thousands of packs in no
catalog, each seen several ways, so the embedder learns to tell any two printed packages apart
rather than the 83 sprites of our catalog and the 50 produce classes.

An identity is one ``simulator.randomized.procedural_product`` drawn from its own seed: its
shape, print, material, creases and see-through parts stay; a view varies what a lane's crop
of the same pack varies in: pose (any rotation, a perspective tilt), size, the surface behind
it, the direction and hardness of its shadow, the light and the sensor (colour cast, blur,
noise, JPEG), and a crop box that is never exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from random import Random

import cv2
import numpy as np

from simulator.randomized import (
    PrintSource,
    camera_sensor,
    cast_shadow,
    procedural_product,
    surface,
    tilted,
)
from simulator.sprites import Sprite, composite, place
from simulator.world import World

CODE_PREFIX = "procedural-"  # identity folders; never a GTIN or PLU, so never in a gallery
CROP_SIZE = (80, 150)  # the item's longest side in pixels, as lane crops of packs run


@dataclass(frozen=True)
class IdentityReport:
    folder: Path
    identities: int
    images: int


def identity_code(seed: int, index: int) -> str:
    return f"{CODE_PREFIX}{seed}-{index:05d}"


def identity_sprite(seed: int, index: int, prints: PrintSource) -> Sprite:
    """The pack itself: the same for every view of it."""
    return procedural_product(Random(f"identity:{seed}:{index}"), prints)


def identity_view(sprite: Sprite, rng: Random, prints: PrintSource) -> np.ndarray:
    """One crop of ``sprite`` as a camera might see it (BGR)."""
    posed = tilted(sprite, rng, rng.uniform(0.0, 0.15))
    longest = rng.randint(*CROP_SIZE)
    side = int(longest * 1.6)
    frame = surface(rng, side, side, prints)
    placement = place(
        posed.scaled_to(longest), (side / 2, side / 2), rng.uniform(-180, 180), 1.0, (side, side)
    )
    if placement is None:  # cannot happen for a centred sprite; kept for the type checker
        return frame
    light = rng.uniform(0, 2 * math.pi)
    reach = longest * rng.uniform(0.0, 0.12)
    offset = (int(math.cos(light) * reach), int(math.sin(light) * reach))
    cast_shadow(frame, placement.alpha, placement.x0, placement.y0, offset, rng.uniform(0.1, 0.5))
    covered = composite(frame, placement)
    frame = camera_sensor(frame, rng)
    ys, xs = np.nonzero(covered)
    if len(xs) == 0:
        return frame
    x1, x2 = placement.x0 + int(xs.min()), placement.x0 + int(xs.max()) + 1
    y1, y2 = placement.y0 + int(ys.min()), placement.y0 + int(ys.max()) + 1
    # A lane's box is off by a little in every direction; a crop never loses most of the item.
    w, h = x2 - x1, y2 - y1
    x1 = int(np.clip(x1 - w * rng.uniform(-0.08, 0.15), 0, side - 2))
    y1 = int(np.clip(y1 - h * rng.uniform(-0.08, 0.15), 0, side - 2))
    x2 = int(np.clip(x2 + w * rng.uniform(-0.08, 0.15), x1 + 2, side))
    y2 = int(np.clip(y2 + h * rng.uniform(-0.08, 0.15), y1 + 2, side))
    crop: np.ndarray = frame[y1:y2, x1:x2]
    return crop


def write_identity_crops(
    world: World, out: Path, identities: int, views: int, seed: int = 0
) -> IdentityReport:
    """``views`` crops of each of ``identities`` procedural packs into ``out/<code>/``; the
    packs' pictures come from the real produce photos' train split when the world has them."""
    prints = PrintSource.from_world(world)
    images = 0
    for index in range(identities):
        code = identity_code(seed, index)
        folder = out / code
        folder.mkdir(parents=True, exist_ok=True)
        sprite = identity_sprite(seed, index, prints)
        rng = Random(f"views:{seed}:{index}")
        for view in range(views):
            crop = identity_view(sprite, rng, prints)
            cv2.imwrite(str(folder / f"{view:03d}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
            images += 1
    return IdentityReport(out, identities, images)
