"""The training augmentations: each one does what a lane does to a product's picture."""

from __future__ import annotations

import random
from pathlib import Path

import cv2
import numpy as np

from trainer.embedder import augment, hand_over, motion_blur, read_image, rotate


def _photo(produce_photos: Path) -> np.ndarray:
    return read_image(sorted((produce_photos / "images" / "train").glob("*/*.jpg"))[0])


def test_augment_keeps_a_valid_colour_crop_of_the_item(produce_photos: Path) -> None:
    image = _photo(produce_photos)
    rng = random.Random(3)
    for _ in range(40):
        out = augment(image, rng)
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
        assert min(out.shape[:2]) >= 0.7 * min(image.shape[:2])


def test_a_hand_covers_part_of_the_item_from_one_edge_in_skin_colour(
    produce_photos: Path,
) -> None:
    image = _photo(produce_photos)
    for seed in range(8):
        out = hand_over(image, random.Random(seed))
        changed = np.any(out != image, axis=2)
        share = float(changed.mean())
        assert 0.03 < share < 0.5, share
        edges = [changed[0, :], changed[-1, :], changed[:, 0], changed[:, -1]]
        assert max(float(e.mean()) for e in edges) > 0.1  # it reaches in from an edge
        colours = np.unique(out[changed].reshape(-1, 3), axis=0)
        assert len(colours) == 1  # one flat skin tone


def test_motion_blur_smears_along_its_direction_only() -> None:
    image = np.zeros((41, 41, 3), np.uint8)
    image[20, 20] = 255
    horizontal = motion_blur(image, 9, 0.0)[:, :, 0]
    rows, cols = np.nonzero(horizontal)
    assert set(rows) == {20} and cols.max() - cols.min() >= 6
    vertical = motion_blur(image, 9, 90.0)[:, :, 0]
    rows, cols = np.nonzero(vertical)
    assert rows.max() - rows.min() >= 6 and cols.max() - cols.min() <= 2


def test_rotation_keeps_size_and_turns_the_picture() -> None:
    image = np.zeros((60, 60, 3), np.uint8)
    cv2.rectangle(image, (10, 28), (50, 32), (255, 255, 255), -1)  # a horizontal bar
    turned = rotate(image, 90.0)
    assert turned.shape == image.shape
    rows, cols = np.nonzero(turned[:, :, 0] > 128)
    assert rows.max() - rows.min() > 30 and cols.max() - cols.min() < 10
