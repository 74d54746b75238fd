"""The tracker pairs tracks with boxes greedily (best score first) instead of by the Hungarian
method the reconciler uses; that is only right if, on what a lane actually sees, the two agree.
Measured here on the association matrices of real lane runs: the shipped detector and tracker
over rendered transactions with items side by side, one riding on another, hands and phones
among them."""

from __future__ import annotations

import numpy as np
import pytest

import checkout_node.vision.tracker as tracker
from checkout_node.model_bundle import load_models
from checkout_node.reconcile.assignment import FORBIDDEN, match_with_unmatched
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World


def best_total(scores: np.ndarray, minimum: float) -> set[tuple[int, int]]:
    """The pairs (each score at least ``minimum``) with the largest total score."""
    cost = np.where(scores >= minimum, -scores, FORBIDDEN)
    return set(match_with_unmatched(cost, 0.0))


def test_greedy_and_hungarian_agree_on_a_lanes_association_matrices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[np.ndarray, float]] = []
    greedy = tracker.greedy_assignment

    def recorded(scores: np.ndarray, minimum: float) -> list[tuple[int, int]]:
        seen.append((scores.copy(), minimum))
        return greedy(scores, minimum)

    monkeypatch.setattr(tracker, "greedy_assignment", recorded)
    world = World.from_catalog()
    models = load_models()
    for kind, seed in (("honest", 41), ("distractors", 42), ("stacked_item", 43)):
        scenario = build_scenario(kind, seed, world, fps=15.0, n_items=6)
        renderer = SceneRenderer(scenario, world, photo_splits=("test",))
        pipeline = LanePipeline(models, LaneZones.standard(640, 480), track_hands=True)
        try:
            for index in range(scenario.n_frames):
                pipeline.process(renderer.render(index)[0], index / scenario.fps)
        finally:
            pipeline.close()
    contested = [(s, m) for s, m in seen if min(s.shape) >= 2]
    assert len(contested) > 50, "too few frames with two or more tracks and boxes to judge"
    differing = [(s, m) for s, m in contested if set(greedy(s, m)) != best_total(s, m)]
    assert not differing, f"{len(differing)} of {len(contested)} matrices paired differently"
