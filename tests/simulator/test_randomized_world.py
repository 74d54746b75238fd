"""The randomised world: images of every size and surface, boxes around what is visible, hidden
products unlabelled, and a YOLO dataset whose labels are relative to each image's own size."""

from __future__ import annotations

from pathlib import Path
from random import Random

import cv2
import numpy as np
import pytest

from simulator.datasets import write_detect_dataset
from simulator.randomized import (
    FRAME_SIZES,
    HAND,
    MIN_VISIBLE_SHARE,
    PRODUCT,
    SHAPES,
    PrintSource,
    _boxes,
    _Thing,
    procedural_product,
    randomized_frame,
)
from simulator.sprites import Sprite
from simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World.from_catalog()


def test_frames_vary_and_their_boxes_lie_inside_them(world: World) -> None:
    rng = Random(5)
    sizes, products = set(), 0
    for _ in range(12):
        frame, boxes = randomized_frame(world, rng, PrintSource(()))
        h, w = frame.shape[:2]
        sizes.add((w, h))
        assert (w, h) in FRAME_SIZES and frame.dtype == np.uint8
        for box in boxes:
            assert 0 <= box.x1 < box.x2 <= w and 0 <= box.y1 < box.y2 <= h
            assert box.visible >= MIN_VISIBLE_SHARE and box.cls in (0, 1, 2)
        products += sum(box.cls == PRODUCT for box in boxes)
    assert len(sizes) >= 2 and products >= 30
    again, _ = randomized_frame(world, Random(5), PrintSource(()))
    first, _ = randomized_frame(world, Random(5), PrintSource(()))
    assert np.array_equal(again, first)  # a seed is an image


def test_every_procedural_shape_is_an_object_and_some_are_see_through() -> None:
    rng = Random(1)
    sprites = [procedural_product(rng, PrintSource(())) for _ in range(200)]
    for sprite in sprites:
        covered = (sprite.alpha > 127).mean()
        assert 0.2 < covered <= 1.0, covered  # a shape, not an empty or a full-frame mask
    partial = [((s.alpha > 60) & (s.alpha < 200)).mean() for s in sprites]
    assert max(partial) > 0.3  # clear bottles and film show the surface through
    assert len(SHAPES) >= 8


def test_only_what_is_visible_is_boxed_and_hidden_products_are_not(world: World) -> None:
    ids = np.zeros((100, 200), np.uint16)
    ids[10:40, 20:70] = 1  # product 1, all of it visible
    ids[50:60, 100:110] = 2  # product 2: 100 of its 1,000 pixels visible
    ids[70:95, 150:190] = 3  # a hand
    blank = Sprite(np.zeros((2, 2, 3), np.uint8), np.zeros((2, 2), np.uint8))
    things = [
        _Thing(blank, PRODUCT, (0, 0), 0, 10),
        _Thing(blank, PRODUCT, (0, 0), 0, 10),
        _Thing(blank, HAND, (0, 0), 0, 10),
    ]
    boxes = _boxes(ids, {1: 1.0, 2: 0.1, 3: 0.9}, things)
    assert [(b.track_id, b.cls, b.x1, b.y1, b.x2, b.y2) for b in boxes] == [
        (1, PRODUCT, 20, 10, 70, 40),
        (3, HAND, 150, 70, 190, 95),
    ]


def test_a_dataset_with_randomised_images_labels_each_relative_to_its_own_size(
    world: World, tmp_path: Path
) -> None:
    report = write_detect_dataset(world, tmp_path, n=16, seed=2, randomized_share=1.0)
    assert report.images == 16 and report.boxes["product"] > 16
    shapes = set()
    for image in sorted((tmp_path / "images").rglob("*.jpg")):
        frame = cv2.imread(str(image))
        assert frame is not None
        shapes.add(frame.shape[:2])
        label = tmp_path / "labels" / image.parent.name / f"{image.stem}.txt"
        for line in label.read_text().split("\n"):
            if line:
                cls, *coords = line.split()
                values = [float(v) for v in coords]
                assert cls in ("0", "1", "2") and all(0.0 <= v <= 1.0 for v in values)
    assert len(shapes) >= 2  # portrait and landscape images both labelled in their own terms


def test_the_dataset_command_draws_from_the_randomised_world(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from simulator.cli import sim

    args = ["dataset", "--task", "detect", "--n", "6", "--randomized-share", "1"]
    result = CliRunner().invoke(sim, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    images = sorted((tmp_path / "images").rglob("*.jpg"))
    assert len(images) == 6
    assert len({cv2.imread(str(p)).shape for p in images}) >= 2  # not the lane's one frame
    refused = CliRunner().invoke(sim, [*args[:-1], "1.5", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 2 and "randomized-share" in refused.output
