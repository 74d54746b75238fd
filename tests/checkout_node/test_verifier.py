"""The lane's second look at birth candidates: the shipped verifier in a real onnxruntime
session, on real produce photos and rendered lane frames; its per-frame budget and memory."""

from __future__ import annotations

from pathlib import Path
from random import Random

import cv2
import numpy as np
import pytest

from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.vision.tracker import NOT_PRODUCT_VERDICT, PRODUCT_VERDICT, UNJUDGED, WAITING
from checkout_node.vision.verifier import (
    BirthVerifier,
    ProductVerifier,
    VerifierConfig,
    VerifierError,
    verifier_crops,
)


@pytest.fixture(scope="module")
def models() -> LaneModels:
    return load_models()


@pytest.fixture(scope="module")
def verifier(models: LaneModels) -> ProductVerifier:
    assert models.verifier is not None, "the shipped bundle carries a verifier"
    return ProductVerifier(models.path(models.verifier))


@pytest.fixture(scope="module")
def lane_frame() -> tuple[np.ndarray, np.ndarray]:
    """A rendered lane frame and its visible products' boxes."""
    from simulator.datasets import MIN_VISIBLE, snapshot
    from simulator.scenario import LaneLayout
    from simulator.scene import Look, SceneRenderer
    from simulator.world import World

    world = World.from_catalog()
    rng = Random(3)
    boxes: list[list[float]] = []
    frame = np.zeros((1, 1, 3), np.uint8)
    seed = 0
    while len(boxes) < 3:
        scene = snapshot(world, rng, world.known, LaneLayout(), 2, seed=seed)
        frame, truth = SceneRenderer(scene, world, Look.random(rng)).render(5)
        boxes = [[b.x1, b.y1, b.x2, b.y2] for b in truth if b.cls == 0 and b.visible >= MIN_VISIBLE]
        seed += 1
    return frame, np.array(boxes, np.float32)


def test_the_shipped_verifier_says_real_produce_is_merchandise(
    verifier: ProductVerifier, produce_photos: Path
) -> None:
    photos = sorted((produce_photos / "images" / "val").glob("*/*.jpg"))[::10][:40]
    assert len(photos) >= 20
    shares = [
        float(verifier.not_product(image, np.array([[0, 0, image.shape[1], image.shape[0]]]))[0])
        for image in (cv2.imread(str(p)) for p in photos)
    ]
    assert np.mean(np.array(shares) < VerifierConfig().veto_share) >= 0.9


def test_rendered_products_pass_and_the_verdict_follows_the_veto_share(
    verifier: ProductVerifier, lane_frame: tuple[np.ndarray, np.ndarray]
) -> None:
    frame, boxes = lane_frame
    share = verifier.not_product(frame, boxes)
    assert share.shape == (len(boxes),) and ((share >= 0) & (share <= 1)).all()
    assert (share < VerifierConfig().veto_share).all()
    strict = BirthVerifier(
        verifier, VerifierConfig(veto_share=float(share.min()) / 2, per_frame=len(boxes))
    )
    assert (strict.judge(frame, boxes, 1) == NOT_PRODUCT_VERDICT).all()


def test_a_frame_looks_at_most_per_frame_crops_and_the_rest_wait(
    verifier: ProductVerifier, lane_frame: tuple[np.ndarray, np.ndarray]
) -> None:
    frame, boxes = lane_frame
    many = np.concatenate([boxes] * 3)[:7]
    sliver = np.array([[10, 10, 30, 200]], np.float32)  # 20 px wide
    looks = BirthVerifier(verifier, VerifierConfig(per_frame=4, veto_share=1.01))  # all pass
    verdicts = looks.judge(frame, np.concatenate([many, sliver]), 1)
    assert (verdicts[:4] == PRODUCT_VERDICT).all() and (verdicts[4:7] == WAITING).all()
    assert verdicts[7] == UNJUDGED  # not looked at, and no budget spent on it
    assert looks.looks == 4 and looks.seconds > 0


def test_a_refusal_is_remembered_where_it_was_for_remember_frames(
    verifier: ProductVerifier, lane_frame: tuple[np.ndarray, np.ndarray]
) -> None:
    frame, boxes = lane_frame
    refusing = BirthVerifier(verifier, VerifierConfig(veto_share=0.0, remember_frames=2))
    assert refusing.judge(frame, boxes[:1], 10).tolist() == [NOT_PRODUCT_VERDICT]
    assert refusing.looks == 1
    # Nearly the same box two frames on: refused from memory, no new look.
    assert refusing.judge(frame, boxes[:1] + 2, 12).tolist() == [NOT_PRODUCT_VERDICT]
    assert refusing.looks == 1
    # Somewhere else entirely: looked at.
    refusing.judge(frame, np.array([[0, 0, 40, 40]], np.float32), 12)
    assert refusing.looks == 2
    # Three frames after the first refusal the memory of it is gone: looked at again.
    refusing.judge(frame, boxes[:1], 13)
    assert refusing.looks == 3


def test_crops_take_a_little_context_and_survive_boxes_off_the_frame() -> None:
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:60, 90:110] = (0, 0, 255)  # red in BGR
    crops = verifier_crops(frame, np.array([[90, 40, 110, 60], [500, 500, 600, 600]]), 32)
    assert crops.shape == (2, 3, 32, 32) and crops.dtype == np.float32
    assert crops[0, 0, 16, 16] == 255 and crops[0, 2, 16, 16] == 0  # RGB: red first
    assert crops[0, 0, 0, 0] < 255  # the context around the box is in the crop
    assert not crops[1].any()


def test_a_file_that_is_not_a_verifier_is_named(models: LaneModels, tmp_path: Path) -> None:
    with pytest.raises(VerifierError, match="detector-"):
        ProductVerifier(models.path(models.detector))
    junk = tmp_path / "verifier.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(VerifierError, match=r"verifier\.onnx"):
        ProductVerifier(junk)
