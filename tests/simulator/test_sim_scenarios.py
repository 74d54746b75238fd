"""Scenarios: reproducible, and their ground truth is consistent with itself."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from product_db.codes import normalise_code
from simulator.scenario import KINDS, ScenarioError, build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World.from_catalog()


def _scanned(scenario) -> Counter[str]:  # type: ignore[no-untyped-def]
    counts: Counter[str] = Counter()
    for scan in scenario.scans:
        counts[normalise_code(scan.code)] += scan.quantity
    return counts


CASES = [(kind, seed) for kind in KINDS for seed in (1, 2, 3)] + [
    ("mixed", s) for s in range(4, 14)
]


@pytest.mark.parametrize(("kind", "seed"), CASES)
def test_expected_alerts_follow_from_true_and_scanned_lists(
    world: World, kind: str, seed: int
) -> None:
    scenario = build_scenario(kind, seed, world, fps=10.0)
    true = Counter(scenario.true_items)
    scanned = _scanned(scenario)
    assert set(scanned) <= set(world.by_code), "every scanned code is in the catalog"
    missing, extra = true - scanned, scanned - true
    alerts = scenario.expected_alerts
    unscanned = Counter(a.code for a in alerts if a.type == "unscanned_item")
    switched_true = Counter(a.code for a in alerts if a.type == "switch")
    switched_scan = Counter(a.scanned_code for a in alerts if a.type == "switch")
    phantom = Counter(a.scanned_code for a in alerts if a.type == "scan_without_item")
    assert unscanned + switched_true == missing
    assert switched_scan + phantom == extra
    assert scenario.honest == (true == scanned)
    if kind in ("honest", "quantity_key", "new_product", "packaging_change", "distractors"):
        assert scenario.honest
    if kind in ("skip_scan", "stacked_item"):
        assert [a.type for a in alerts] == ["unscanned_item"]
    if kind in ("ticket_switch", "plu_swap"):
        assert [(a.type, a.subtype) for a in alerts] == [
            ("switch", "ticket" if kind == "ticket_switch" else "plu")
        ]
        switch = alerts[0]
        assert (
            world.by_code[switch.scanned_code].price_minor <= world.by_code[switch.code].price_minor
        )
    if kind == "new_product":
        assert scenario.new_products and set(scenario.new_products) <= world.holdout
    if kind == "mixed":
        assert len(scenario.true_items) >= 5
    for item in scenario.items:
        if item.code in world.holdout:
            assert kind in ("new_product", "mixed")


@pytest.mark.parametrize("kind", KINDS)
def test_frames_boxes_lie_in_frame_and_tracks_are_continuous(world: World, kind: str) -> None:
    scenario = build_scenario(kind, 5, world, fps=10.0)
    renderer = SceneRenderer(scenario, world)
    seen: dict[int, list[int]] = {}
    width, height = scenario.layout.width, scenario.layout.height
    for index, frame, boxes in renderer.frames():
        assert frame.shape == (height, width, 3)
        for box in boxes:
            assert 0 <= box.x1 < box.x2 <= width and 0 <= box.y1 < box.y2 <= height
            assert 0.0 <= box.visible <= 1.0
            seen.setdefault(box.track_id, []).append(index)
    items = {a.actor_id for a in scenario.items}
    assert items <= set(seen), "every item is in view at some point"
    for track_id, frames in seen.items():
        assert frames == list(range(frames[0], frames[-1] + 1)), f"track {track_id} has gaps"


def test_items_counted_in_crossing_order_and_crossing_is_into_bagging(world: World) -> None:
    scenario = build_scenario("mixed", 21, world, fps=10.0)
    left = scenario.layout.scan_x[0]
    for item in scenario.items:
        assert item.crossed_at is not None
        before = item.pose(item.crossed_at - 0.01)
        after = item.pose(item.crossed_at + 0.01)
        assert before is not None and after is not None
        assert before.x >= left - 1 and after.x < left + 1


def test_same_kind_and_seed_give_the_same_scenario(world: World) -> None:
    a = build_scenario("mixed", 99, world, fps=10.0)
    b = build_scenario("mixed", 99, world, fps=10.0)
    assert a.summary() == b.summary()
    fa, _ = SceneRenderer(a, world).render(25)
    fb, _ = SceneRenderer(b, world).render(25)
    assert np.array_equal(fa, fb)
    assert build_scenario("mixed", 100, world).summary() != a.summary()


def test_transaction_sizes_and_events(world: World) -> None:
    sizes = [len(build_scenario("mixed", s, world, fps=10.0).true_items) for s in range(30)]
    assert min(sizes) >= 5 and max(sizes) <= 60
    scenario = build_scenario("honest", 3, world)
    kinds = [p.type for p in scenario.pos_events]
    assert kinds == ["transaction_start", "transaction_end", "payment"]
    assert scenario.pos_events[0].t < min(s.t for s in scenario.scans)
    assert scenario.pos_events[1].t >= max(i.crossed_at or 0 for i in scenario.items)


def test_unknown_kind_is_refused(world: World) -> None:
    with pytest.raises(ScenarioError, match="unknown scenario kind 'shoplift'"):
        build_scenario("shoplift", 1, world)
