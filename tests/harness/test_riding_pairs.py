"""How the counting evaluation judges what the detector made of an item riding with another."""

from __future__ import annotations

import numpy as np

from checkout_node.model_bundle import load_models
from checkout_node.vision.detector import Detections
from harness.evals.counting import (
    PAIR_MIN_VISIBLE,
    judge_pair_frame,
    riding_pairs,
    run_transaction,
)
from simulator.scenario import build_scenario
from simulator.scene import Box, SceneRenderer
from simulator.world import World

CARRIER = Box(1, 0, 100, 100, 200, 180, 1.0, "carrier")
RIDING = Box(2, 0, 180, 150, 250, 200, 0.6, "riding")


def detections(*boxes: tuple[float, float, float, float], cls: int = 0) -> Detections:
    n = len(boxes)
    class_scores = np.zeros((n, 3), np.float32)
    class_scores[:, cls] = 0.8
    return Detections(
        np.array(boxes, np.float32).reshape(n, 4),
        np.full(n, 0.8, np.float32),
        np.full(n, cls, np.int32),
        class_scores,
    )


def test_a_box_of_its_own_and_one_box_around_both_are_told_apart() -> None:
    def judge(found: Detections) -> tuple[bool, bool]:
        return judge_pair_frame(RIDING, CARRIER, found)

    assert judge(detections((100, 100, 200, 180), (182, 148, 252, 203))) == (True, False)
    assert judge(detections((98, 98, 252, 202))) == (False, True)
    # A riding item nearly as large as its carrier: the box around both overlaps it by more
    # than half, and is still not its own.
    large = Box(2, 0, 150, 100, 250, 190, 0.6, "riding")
    assert judge_pair_frame(large, CARRIER, detections((100, 98, 252, 190))) == (False, True)
    assert judge(detections((100, 100, 200, 180))) == (False, False)
    # A hand over the pair is not a product box; non-merchandise shares the products' group.
    assert judge(detections((98, 98, 252, 202), cls=1)) == (False, False)
    assert judge(detections((182, 148, 252, 203), cls=2)) == (True, False)
    assert judge(Detections.empty(3)) == (False, False)


def test_the_carrier_is_the_product_the_riding_item_moves_with() -> None:
    world = World.from_catalog()
    scenario = build_scenario("stacked_item", 3, world, fps=15.0, n_items=3)
    pairs = riding_pairs(scenario)
    assert len(pairs) == 1
    ((riding_id, carrier_id),) = pairs.items()
    actors = {a.actor_id: a for a in scenario.actors}
    riding, carrier = actors[riding_id], actors[carrier_id]
    assert riding.behaviour == "stacked" and carrier.role == "product"
    offsets = {
        (round(r.x - c.x, 6), round(r.y - c.y, 6))
        for r, c in zip(riding.keyframes, carrier.keyframes, strict=True)
    }
    assert len(offsets) == 1  # the same path, shifted


def test_counting_judges_every_frame_where_the_riding_item_shows_beside_its_carrier() -> None:
    world = World.from_catalog()
    scenario = build_scenario("stacked_item", 3, world, fps=15.0, n_items=3)
    ((riding_id, carrier_id),) = riding_pairs(scenario).items()
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    showing = 0
    for index in range(scenario.n_frames):
        boxes = {box.track_id: box for box in renderer.render(index)[1]}
        item = boxes.get(riding_id)
        showing += item is not None and carrier_id in boxes and item.visible >= PAIR_MIN_VISIBLE
    for interval in (1, 2):
        riding = run_transaction(scenario, world, load_models(), detect_interval=interval).riding
        if interval == 1:
            assert riding.frames == showing > 0
        else:  # only frames the detector ran on are judged
            assert 0 < riding.frames < showing
        assert riding.own_box <= riding.frames and riding.one_box_around_both <= riding.frames
        report = riding.to_json()
        assert report["riding_item_own_box"] == round(riding.own_box / riding.frames, 3)
