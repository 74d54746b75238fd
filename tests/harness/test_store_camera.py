"""`bench store-camera`'s parts on a short run: held-out frames of a store look scored by a real
detector, `eval lanes` in a store look with the zones drawn for its camera, and a look nobody
defined refused by name. (The whole bench, a lane's day and a training pass, is `make bench`'s.)"""

from __future__ import annotations

from click.testing import CliRunner

from checkout_node.model_bundle import load_models
from harness.evals.lanes import evaluate_lanes
from harness.evals.store_camera import (
    StoreCameraConfig,
    as_production_runs,
    box_recall,
    held_out_frames,
)
from laneguard.bundle import SHIPPED_BUNDLE
from laneguard.cli import main as laneguard_cli
from simulator.store_look import DEFAULT_STORE_LOOK, STORE_LOOKS, store_look
from simulator.world import World


def test_held_out_frames_carry_the_looks_true_boxes_and_the_detector_is_scored_on_them() -> None:
    config = StoreCameraConfig(held_out_checkouts=1, frame_step=10)
    world = World.from_catalog()
    look = store_look(DEFAULT_STORE_LOOK)
    store, plain = held_out_frames(config, world, look), held_out_frames(config, world, None)
    # The same checkout seen by two cameras (the store's sees a little more of the counter).
    assert store and plain and abs(len(store) - len(plain)) <= 2
    (store_image, store_truth), (plain_image, _) = store[0], plain[0]
    assert store_image.shape == plain_image.shape == (480, 640, 3)
    assert not (store_image == plain_image).all()
    assert store_truth.shape[1] == 4 and (store_truth[:, 2:] > store_truth[:, :2]).all()

    # The shipped detector finds the simulator's own products: a scoring that misread the
    # boxes (their order, their pixels) would find none of them.
    shipped = as_production_runs(SHIPPED_BUNDLE)
    scored = box_recall(shipped, plain)
    assert scored["products"] == sum(len(truth) for _, truth in plain)
    assert scored["own_box_recall"] >= 0.8 and scored["own"] <= scored["detections"]
    in_store = box_recall(shipped, store)
    assert in_store["products"] == sum(len(truth) for _, truth in store)


def test_eval_lanes_runs_a_checkout_in_a_store_look() -> None:
    result = evaluate_lanes(
        load_models(),
        scenarios=1,
        seed=3,
        fps=15.0,
        kinds=("honest",),
        progress=lambda line: None,
        store=store_look(DEFAULT_STORE_LOOK),
    )
    # This checkout, seen by the store's camera, is counted whole: every item once. (Where the
    # warped zones lie is tests/simulator/test_store_look.py's.)
    assert result["transactions"] == 1 and result["items"] == 7
    assert result["items_missed_per_100"] == 0 and result["items_counted_extra_per_100"] == 0
    assert result["checkout_accuracy"] == 1.0


def test_an_unknown_store_look_is_refused_by_name() -> None:
    outcome = CliRunner().invoke(laneguard_cli, ["eval", "lanes", "--store-look", "nowhere"])
    assert outcome.exit_code == 2
    assert "nowhere" in outcome.output and all(name in outcome.output for name in STORE_LOOKS)
