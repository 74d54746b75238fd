"""Procedural packs as embedder identities: one pack looks the same in every view and views of
one pack are closer to each other than to another pack's, the crops hold the pack, the folders
are named so nothing takes them for a product code, and the same seed writes the same crops."""

from __future__ import annotations

from pathlib import Path
from random import Random

import cv2
import numpy as np
import pytest

from product_db.codes import parse_code
from simulator.identities import (
    CODE_PREFIX,
    CROP_SIZE,
    identity_sprite,
    identity_view,
    write_identity_crops,
)
from simulator.randomized import PrintSource
from simulator.world import World


def _signature(crop: np.ndarray) -> np.ndarray:
    """A colour histogram: a pose- and size-free look at a crop's print."""
    hsv = cv2.cvtColor(crop, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [12, 6], [0, 180, 0, 256]).ravel()
    return np.asarray(hist / max(float(hist.sum()), 1.0))


def test_a_pack_is_itself_in_every_view_and_another_pack_is_not() -> None:
    prints = PrintSource(())
    a, b = identity_sprite(0, 1, prints), identity_sprite(0, 2, prints)
    again = identity_sprite(0, 1, prints)
    assert np.array_equal(a.bgr, again.bgr) and np.array_equal(a.alpha, again.alpha)
    assert a.bgr.shape != b.bgr.shape or not np.array_equal(a.bgr, b.bgr)
    rng = Random(3)
    views_a = [identity_view(a, rng, prints) for _ in range(6)]
    views_b = [identity_view(b, rng, prints) for _ in range(6)]
    for crop in views_a + views_b:
        assert crop.ndim == 3 and crop.shape[2] == 3
        # The pack's longest side plus a crop margin that is never exact, never most of it lost
        assert 0.6 * CROP_SIZE[0] <= max(crop.shape[:2]) <= 1.6 * CROP_SIZE[1]
    # Two views of one pack differ (pose, light, surface)...
    assert not np.array_equal(views_a[0], views_a[1])
    # ...yet over 6 views each, a pack's views match its own mean look better than the other's.
    own = np.mean([_signature(v) for v in views_a], axis=0)
    other = np.mean([_signature(v) for v in views_b], axis=0)
    closer = sum(
        np.abs(_signature(v) - own).sum() < np.abs(_signature(v) - other).sum() for v in views_a
    )
    assert closer >= 4


def test_written_crops_are_named_apart_from_product_codes_and_repeat(tmp_path: Path) -> None:
    world = World.from_catalog()
    first = write_identity_crops(world, tmp_path / "one", identities=5, views=3, seed=7)
    assert (first.identities, first.images) == (5, 15)
    folders = sorted(p for p in (tmp_path / "one").iterdir())
    assert len(folders) == 5 and all(p.name.startswith(CODE_PREFIX) for p in folders)
    assert all(len(list(p.glob("*.jpg"))) == 3 for p in folders)
    for folder in folders:  # a gallery or a till would refuse it as a product code
        with pytest.raises(ValueError):
            parse_code(folder.name)
    write_identity_crops(world, tmp_path / "two", identities=5, views=3, seed=7)
    for crop in (tmp_path / "one").rglob("*.jpg"):
        assert (
            crop.read_bytes()
            == (tmp_path / "two" / crop.relative_to(tmp_path / "one")).read_bytes()
        )
    other = write_identity_crops(world, tmp_path / "three", identities=1, views=1, seed=8)
    assert other.images == 1 and not (tmp_path / "three" / folders[0].name).exists()
