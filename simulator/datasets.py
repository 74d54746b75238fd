"""Training data from the simulated world.

- ``detect``: ultralytics YOLO format (images/, labels/, data.yaml) with three classes:
  product, hand, non_merchandise. Half the images are frames of checkout scenarios (hands
  holding items, motion blur), half are cluttered snapshots (several items, stacking, props).
- ``embed``: item crops in one folder per product code (the catalog key), as the lane would
  cut them from its frames: rotated, partly occluded by the hand, lit like a real lane.

Holdout products (and packaging versions other than the training one) are kept out of both
unless asked for, so the "new product" and "packaging change" cases stay unseen by the models.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import Literal

import cv2
import numpy as np

from simulator.props import NON_MERCHANDISE
from simulator.scenario import (
    KINDS,
    Actor,
    Keyframe,
    LaneLayout,
    Scenario,
    build_scenario,
)
from simulator.scene import Box, Look, SceneRenderer
from simulator.world import TRAINING_PACKAGING_VERSION, SimProduct, World

DETECT_NAMES = {0: "product", 1: "hand", 2: "non_merchandise"}
MIN_VISIBLE = 0.3  # boxes of objects hidden more than this are not labelled
# With real produce photos, this share of images still uses the drawn produce look, so models
# work in both simulated worlds (the tests and benchmarks run without the photos).
DRAWN_PRODUCE_SHARE = 0.3
STACKED_SHARE = 0.4  # snapshot items placed partly under another item
# Frames of a checkout where an item rides under the one being carried, taken while the pair
# moves (``riding_share`` of write_detect_dataset). Off in the shipped recipe: with them the
# detector still drew one box around most pairs and took phones for products more often
# (checkout_node/models/README.md has the runs).
TRAINING_KINDS = tuple(k for k in KINDS if k not in ("new_product", "packaging_change", "mixed"))


@dataclass
class DatasetReport:
    out: Path
    images: int = 0
    boxes: dict[str, int] = field(default_factory=dict)
    classes: int = 0

    def summary(self) -> str:
        if len(self.boxes) > 6:  # embedding crops: one entry per product
            return f"{self.images} crops of {len(self.boxes)} products in {self.out}"
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(self.boxes.items()))
        return f"{self.images} images in {self.out} ({counts})"


def _products(world: World, selection: Literal["known", "holdout", "all"]) -> list[SimProduct]:
    if selection == "holdout":
        return world.new_products
    if selection == "all":
        return world.products
    return world.known


def snapshot(
    world: World,
    rng: Random,
    pool: list[SimProduct],
    layout: LaneLayout,
    version: int,
    seed: int,
    max_items: int = 5,
) -> Scenario:
    """A still scene: a few items anywhere on the lane, some partly under another, hands over
    some, often non-merchandise (a bag or phone taken for a product would count as an item)."""
    actors: list[Actor] = []

    def still(x: float, y: float, angle: float) -> list[Keyframe]:
        drift_x, drift_y = rng.uniform(-8, 8), rng.uniform(-4, 4)  # some motion blur
        return [
            Keyframe(0.0, x - drift_x, y - drift_y, angle),
            Keyframe(0.1, x, y, angle),
            Keyframe(1.0, x, y, angle),
        ]

    top, bottom = layout.lane_top, layout.lane_bottom
    for _ in range(rng.randint(1, max_items)):
        product = rng.choice(pool)
        x, y = rng.uniform(40, layout.width - 40), rng.uniform(top + 30, bottom - 30)
        under = [a for a in actors if a.role == "product"]
        if under and rng.random() < STACKED_SHARE:  # slid partly under an item already placed
            other = rng.choice(under)
            reach, direction = other.size * rng.uniform(0.4, 0.6), rng.uniform(0, 2 * math.pi)
            x = other.keyframes[-1].x + reach * math.cos(direction)
            y = other.keyframes[-1].y + reach * math.sin(direction)
        actors.append(
            Actor(
                len(actors) + 1,
                "product",
                still(x, y, rng.uniform(-180, 180)),
                z=rng.randint(1, 15),
                code=product.code,
                display_code=product.display_code,
                packaging_version=version,
                variant=rng.randrange(1000),
                size=rng.randint(70, 120) if product.is_produce else rng.randint(85, 160),
            )
        )
    for _ in range(rng.randint(0, 2)):
        target = rng.choice(actors)
        k = target.keyframes[-1]
        actors.append(
            Actor(
                len(actors) + 1,
                "hand",
                still(k.x - rng.uniform(20, 60), k.y + rng.uniform(20, 60), rng.uniform(-60, 30)),
                z=20,
                variant=rng.randrange(7),
                size=rng.randint(110, 160),
            )
        )
    for _ in range(rng.choices((0, 1, 2), weights=(0.4, 0.45, 0.15))[0]):
        actors.append(
            Actor(
                len(actors) + 1,
                "non_merchandise",
                still(
                    rng.uniform(40, layout.width - 40),
                    rng.uniform(top, bottom),
                    rng.uniform(-180, 180),
                ),
                z=rng.randint(1, 15),
                kind=rng.choice(NON_MERCHANDISE),
                variant=rng.randrange(4),
                size=rng.randint(80, 160),
            )
        )
    return Scenario("snapshot", seed, 10.0, layout, actors, [], [], [], duration=1.0)


def write_detect_dataset(
    world: World,
    out: str | Path,
    n: int,
    seed: int = 0,
    val_fraction: float = 0.1,
    selection: Literal["known", "holdout", "all"] = "known",
    version: int = TRAINING_PACKAGING_VERSION,
    layout: LaneLayout | None = None,
    riding_share: float = 0.0,
    randomized_share: float = 0.0,
) -> DatasetReport:
    """Write ``n`` labelled images in ultralytics YOLO layout under ``out``.

    ``riding_share`` of them (known products only) are frames of a stacked pair on the move;
    ``randomized_share`` are images of the randomised world (simulator.randomized), drawn from
    a random stream of their own so the lane images of a recipe without them stay the same."""
    from simulator.randomized import PrintSource, randomized_frame

    folder = Path(out)
    layout = layout or LaneLayout()
    pool = _products(world, selection)
    rng = Random(f"detect:{seed}")
    report = DatasetReport(folder, classes=len(DETECT_NAMES))
    drawn = world.without_photos() if world.photos is not None else world
    scenarios: list[SceneRenderer] = []
    riding: list[SceneRenderer] = []
    randomized_rng = Random(f"randomized:{seed}")
    prints = PrintSource.from_world(world)
    n_val = max(1, int(n * val_fraction)) if n > 1 else 0
    for split in ("train", "val"):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        split = "val" if i >= n - n_val else "train"
        look = Look.random(rng, jpeg=rng.random() < 0.5)
        view = drawn if rng.random() < DRAWN_PRODUCE_SHARE else world
        # No draw when off, so recipes without riding (or randomised) frames keep their images.
        if randomized_share > 0 and randomized_rng.random() < randomized_share:
            frame, boxes = randomized_frame(world, randomized_rng, prints)
        elif selection == "known" and riding_share > 0 and rng.random() < riding_share:
            if not riding or rng.random() < 0.2:
                scenario = build_scenario(
                    "stacked_item", rng.randrange(10**6), world, fps=10.0, layout=layout
                )
                riding.append(SceneRenderer(scenario, view, look))
            frame, boxes = riding_frame(rng.choice(riding), rng)
        elif rng.random() < 0.5 and selection == "known":
            if not scenarios or rng.random() < 0.1:
                kind = rng.choice(TRAINING_KINDS)
                scenario = build_scenario(
                    kind, rng.randrange(10**6), world, fps=10.0, layout=layout
                )
                scenarios.append(SceneRenderer(scenario, view, look))
            renderer = rng.choice(scenarios)
            for _attempt in range(6):  # prefer frames with something in view
                frame, boxes = renderer.render(rng.randrange(renderer.scenario.n_frames))
                if boxes:
                    break
        else:
            scene = snapshot(world, rng, pool, layout, version, seed=i)
            frame, boxes = SceneRenderer(scene, view, look).render(5)
        name = f"{seed:04d}_{i:06d}"
        cv2.imwrite(
            str(folder / "images" / split / f"{name}.jpg"), frame, [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        lines = []
        height, width = frame.shape[:2]
        for box in boxes:
            if box.visible < MIN_VISIBLE:
                continue
            cx = (box.x1 + box.x2) / 2 / width
            cy = (box.y1 + box.y2) / 2 / height
            bw, bh = (box.x2 - box.x1) / width, (box.y2 - box.y1) / height
            lines.append(f"{box.cls} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
            label = DETECT_NAMES[box.cls]
            report.boxes[label] = report.boxes.get(label, 0) + 1
        (folder / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + "\n")
        report.images += 1
    names = "\n".join(f"  {k}: {v}" for k, v in DETECT_NAMES.items())
    (folder / "data.yaml").write_text(
        f"path: {folder.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n"
    )
    return report


def riding_frame(renderer: SceneRenderer, rng: Random) -> tuple[np.ndarray, list[Box]]:
    """A frame of ``renderer``'s scenario while its stacked pair moves over the lane."""
    hidden = next(a for a in renderer.scenario.actors if a.behaviour == "stacked")
    frames = hidden.keyframes
    moving = [
        (k.t, after.t) for k, after in zip(frames, frames[1:]) if (k.x, k.y) != (after.x, after.y)
    ]
    start = min((span[0] for span in moving), default=0.0)
    end = max((span[1] for span in moving), default=renderer.scenario.duration)
    index = int(rng.uniform(start, end) * renderer.scenario.fps)
    return renderer.render(min(max(index, 0), renderer.scenario.n_frames - 1))


def write_embed_dataset(
    world: World,
    out: str | Path,
    per_product: int,
    seed: int = 0,
    selection: Literal["known", "holdout", "all"] = "known",
    version: int = TRAINING_PACKAGING_VERSION,
    photo_splits: tuple[str, ...] = ("train",),
    layout: LaneLayout | None = None,
    codes: Collection[str] | None = None,
) -> DatasetReport:
    """Write ``per_product`` crops of every selected product (only ``codes`` when given) into
    ``out/<code>/``."""
    folder = Path(out)
    layout = layout or LaneLayout()
    rng = Random(f"embed:{seed}:{version}")
    report = DatasetReport(folder)
    pool = [p for p in _products(world, selection) if codes is None or p.code in codes]
    drawn = world.without_photos() if world.photos is not None else world
    for product in pool:
        target = folder / product.code
        target.mkdir(parents=True, exist_ok=True)
        for j in range(per_product):
            view = drawn if product.is_produce and rng.random() < DRAWN_PRODUCE_SHARE else world
            crop = _item_crop(view, product, rng, layout, version, photo_splits)
            cv2.imwrite(
                str(target / f"{seed:04d}_{j:05d}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90]
            )
            report.images += 1
        report.boxes[product.code] = per_product
    report.classes = len(pool)
    return report


def _item_crop(
    world: World,
    product: SimProduct,
    rng: Random,
    layout: LaneLayout,
    version: int,
    photo_splits: tuple[str, ...],
) -> np.ndarray:
    """One item in a lane scene, cropped around its box with a little jitter."""
    x = rng.uniform(layout.width * 0.25, layout.width * 0.75)
    y = rng.uniform(layout.lane_top + 80, layout.lane_bottom - 80)
    angle = rng.uniform(-180, 180)
    size = rng.randint(70, 120) if product.is_produce else rng.randint(90, 160)
    frames = [
        Keyframe(0.0, x - rng.uniform(-10, 10), y, angle),
        Keyframe(0.1, x, y, angle),
        Keyframe(1.0, x, y, angle),
    ]
    item = Actor(
        1,
        "product",
        frames,
        z=10,
        code=product.code,
        display_code=product.display_code,
        packaging_version=version,
        variant=rng.randrange(10**6),
        size=size,
    )
    actors = [item]
    if rng.random() < 0.5:
        hand_frames = [
            Keyframe(
                k.t, k.x - size * rng.uniform(0.3, 0.6), k.y + size * rng.uniform(0.2, 0.5), -15
            )
            for k in frames
        ]
        actors.append(Actor(2, "hand", hand_frames, z=20, variant=rng.randrange(7), size=130))
    scene = Scenario("crop", 0, 10.0, layout, actors, [], [], [], duration=1.0)
    look = Look.random(rng, jpeg=rng.random() < 0.5)
    renderer = SceneRenderer(scene, world, look, photo_splits=photo_splits)
    frame, boxes = renderer.render(5)
    box = next(b for b in boxes if b.track_id == 1)
    pad = int(max(box.x2 - box.x1, box.y2 - box.y1) * rng.uniform(0.02, 0.12))
    x1, y1 = max(0, box.x1 - pad), max(0, box.y1 - pad)
    x2, y2 = min(layout.width, box.x2 + pad), min(layout.height, box.y2 + pad)
    return frame[y1:y2, x1:x2]
