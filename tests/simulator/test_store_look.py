"""Store looks: one store's lane, light and camera, and what the renderer makes of them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from checkout_node.vision.counting import LaneZones
from simulator.scenario import LaneLayout, Scenario, build_scenario
from simulator.scene import Box, SceneRenderer, lane_background
from simulator.store_look import (
    DEFAULT_STORE_LOOK,
    STORE_LOOKS,
    StoreLook,
    store_look,
    warp_points,
)
from simulator.world import REDESIGN_VERSION, World

LAYOUT = LaneLayout()


@pytest.fixture(scope="module")
def world() -> World:
    return World.from_catalog()


@pytest.fixture(scope="module")
def one_item(world: World) -> Scenario:
    return build_scenario("honest", 3, world, fps=10.0, n_items=1)


def _flat(look: StoreLook) -> StoreLook:
    """The look seen from straight above the scanner, as the plain simulator's camera."""
    return replace(look, height=1.0, tilt_deg=0.0, rotation_deg=0.0)


def test_a_store_frame_is_not_the_plain_simulator(world: World) -> None:
    scenario = build_scenario("honest", 1, world, fps=10.0)
    index = scenario.n_frames // 2
    plain, plain_boxes = SceneRenderer(scenario, world).render(index)
    for look in STORE_LOOKS.values():
        frame, boxes = SceneRenderer(scenario, world, store=look).render(index)
        assert frame.shape == plain.shape and frame.dtype == np.uint8
        difference = np.abs(frame.astype(np.int16) - plain.astype(np.int16)).mean()
        assert difference > 20, look.name
        assert {b.track_id for b in boxes} == {b.track_id for b in plain_boxes}, look.name
        assert 20 < frame.mean() < 220, f"{look.name}: neither dark nor washed out"


def test_without_a_store_the_frames_are_the_plain_simulator(world: World) -> None:
    scenario = build_scenario("ticket_switch", 4, world, fps=10.0)
    for index in (0, scenario.n_frames // 3, scenario.n_frames // 2):
        frame, boxes = SceneRenderer(scenario, world).render(index)
        same, same_boxes = SceneRenderer(scenario, world, store=None).render(index)
        assert np.array_equal(frame, same) and boxes == same_boxes


def _alone(scenario: Scenario, world: World, look: StoreLook) -> tuple[np.ndarray, Box, int]:
    """A frame where the single item is in full view, inside the frame and apart from the
    hand."""
    renderer = SceneRenderer(scenario, world, store=look)
    for index in range(scenario.n_frames):
        frame, boxes = renderer.render(index)
        items = [
            b
            for b in boxes
            if b.cls == 0
            and b.visible == 1.0
            and 0 < b.x1 < b.x2 - 30 < LAYOUT.width - 31
            and 0 < b.y1 < b.y2 - 30 < LAYOUT.height - 31
        ]
        others = [b for b in boxes if b.cls != 0]
        if items and all(
            o.x1 > items[0].x2 + 8
            or o.x2 < items[0].x1 - 8
            or o.y1 > items[0].y2 + 8
            or o.y2 < items[0].y1 - 8
            for o in others
        ):
            return frame, items[0], index
    raise AssertionError("the item is never in view alone")


@pytest.mark.parametrize("name", sorted(STORE_LOOKS))
def test_the_box_covers_the_item_where_the_camera_sees_it(
    world: World, one_item: Scenario, name: str
) -> None:
    look = replace(STORE_LOOKS[name], jpeg_quality=None)  # no compression spreading the edges
    frame, box, index = _alone(one_item, world, look)
    empty = replace(one_item, actors=[])
    bare, no_boxes = SceneRenderer(empty, world, store=look).render(index)
    assert no_boxes == []
    changed = np.abs(frame.astype(np.int16) - bare.astype(np.int16)).max(axis=2) > 40
    hand = np.zeros_like(changed)
    for other in SceneRenderer(one_item, world, store=look).render(index)[1]:
        if other.cls != 0:
            hand[other.y1 : other.y2, other.x1 : other.x2] = True
    item = changed & ~hand
    ys, xs = np.nonzero(item)
    assert xs.size > 200
    # The item's pixels lie in its box, and the box is tight around them.
    assert box.x1 - 1 <= xs.min() and xs.max() < box.x2 + 1
    assert box.y1 - 1 <= ys.min() and ys.max() < box.y2 + 1
    assert xs.min() <= box.x1 + 4 and xs.max() >= box.x2 - 5
    assert ys.min() <= box.y1 + 4 and ys.max() >= box.y2 - 5


def test_items_are_lit_like_the_counter_where_they_lie(world: World, one_item: Scenario) -> None:
    look = replace(STORE_LOOKS[DEFAULT_STORE_LOOK], jpeg_quality=None, haze=0.0)
    flat = replace(look, light_gradient=0.0, shadow=0.0)
    checked = 0
    for index in range(one_item.n_frames):
        lit, boxes = SceneRenderer(one_item, world, store=look).render(index)
        items = [b for b in boxes if b.cls == 0 and b.visible == 1.0]
        if not items or items[0].x2 - items[0].x1 < 30 or items[0].y2 - items[0].y1 < 30:
            continue
        unlit, _ = SceneRenderer(one_item, world, store=flat).render(index)
        box = items[0]
        cx, cy = (box.x1 + box.x2) // 2, (box.y1 + box.y2) // 2
        patch = (slice(cy - 3, cy + 4), slice(cx - 3, cx + 4))
        ratio = lit[patch].astype(float).mean() / max(1.0, unlit[patch].astype(float).mean())
        x, y = warp_points(
            np.linalg.inv(look.camera_warp(LAYOUT.width, LAYOUT.height)), [[cx, cy]]
        )[0]
        margin = look.margin(LAYOUT)
        expected = look.light(LAYOUT.width, LAYOUT.height, margin)[int(y) + margin, int(x) + margin]
        assert abs(ratio - expected) < 0.12, (index, ratio, expected)
        checked += 1
    assert checked >= 3
    lights = look.light(LAYOUT.width, LAYOUT.height)
    assert lights.max() > 1.2 and lights.min() < 0.8


def test_the_store_camera_moves_the_box_as_it_moves_the_lane(
    world: World, one_item: Scenario
) -> None:
    look = STORE_LOOKS[DEFAULT_STORE_LOOK]
    _, box, index = _alone(one_item, world, look)
    plain = next(
        b for b in SceneRenderer(one_item, world, store=_flat(look)).render(index)[1] if b.cls == 0
    )
    centre = warp_points(
        look.camera_warp(LAYOUT.width, LAYOUT.height),
        [[(plain.x1 + plain.x2) / 2, (plain.y1 + plain.y2) / 2]],
    )[0]
    assert abs((box.x1 + box.x2) / 2 - centre[0]) < 6
    assert abs((box.y1 + box.y2) / 2 - centre[1]) < 6


def test_zones_follow_the_camera_and_keep_the_scan_area_in_view() -> None:
    for look in STORE_LOOKS.values():
        zones = look.zones(LAYOUT)
        assert set(zones) == {"scan_area", "bagging_area", "belt"}
        scan = np.array(zones["scan_area"])
        assert len(scan) == 4, f"{look.name}: the scan area is cut by the frame"
        assert (scan >= 0).all() and (scan[:, 0] <= LAYOUT.width).all()
        assert (scan[:, 1] <= LAYOUT.height).all()
        for polygon in zones.values():
            points = np.array(polygon)
            assert (points >= 0).all() and (points <= [LAYOUT.width, LAYOUT.height]).all()
        # A lane configured with them sees each place of the lane in its own zone.
        lane = LaneZones.from_mapping(zones)
        top_down = LaneZones.standard(LAYOUT.width, LAYOUT.height)
        warp = look.camera_warp(LAYOUT.width, LAYOUT.height)
        for x, y in [(100, 240), (200, 150), (320, 240), (400, 400), (500, 300), (600, 100)]:
            seen = warp_points(warp, [[x, y]])[0]
            assert lane.zone_of((seen[0], seen[1])) == top_down.zone_of((x, y)), (look.name, x, y)


def test_the_overhead_camera_gives_the_layout_back() -> None:
    look = _flat(STORE_LOOKS[DEFAULT_STORE_LOOK])
    assert np.allclose(look.camera_warp(LAYOUT.width, LAYOUT.height), np.eye(3))
    assert look.zones(LAYOUT) == {
        name: [[float(x), float(y)] for x, y in polygon] for name, polygon in LAYOUT.zones().items()
    }


def test_camera_height_and_tilt() -> None:
    look = _flat(STORE_LOOKS[DEFAULT_STORE_LOOK])
    lower = replace(look, height=1.2).camera_warp(LAYOUT.width, LAYOUT.height)
    corner = warp_points(lower, [[120, 90]])[0]
    assert np.allclose(corner, [320 - 1.2 * 200, 240 - 1.2 * 150])  # items larger
    tilted = replace(look, tilt_deg=20.0, tilt_direction_deg=90.0)
    top, bottom = (
        warp_points(tilted.camera_warp(LAYOUT.width, LAYOUT.height), line)
        for line in ([[220, 100], [420, 100]], [[220, 380], [420, 380]])
    )
    assert bottom[1, 0] - bottom[0, 0] > 1.1 * (top[1, 0] - top[0, 0])  # the near side larger
    centre = warp_points(tilted.camera_warp(LAYOUT.width, LAYOUT.height), [[320, 240]])[0]
    assert np.allclose(centre, [320, 240])  # still aimed at the scanner
    across = replace(look, tilt_deg=20.0, tilt_direction_deg=0.0)
    left, right = (
        warp_points(across.camera_warp(LAYOUT.width, LAYOUT.height), line)
        for line in ([[100, 140], [100, 340]], [[540, 140], [540, 340]])
    )
    assert right[1, 1] - right[0, 1] > 1.1 * (left[1, 1] - left[0, 1])


def test_the_lane_goes_on_wherever_the_camera_looks() -> None:
    for look in STORE_LOOKS.values():
        margin = look.margin(LAYOUT)
        seen = warp_points(
            np.linalg.inv(look.camera_warp(LAYOUT.width, LAYOUT.height)),
            [[0, 0], [LAYOUT.width, 0], [LAYOUT.width, LAYOUT.height], [0, LAYOUT.height]],
        )
        assert (seen >= -margin).all(), look.name
        assert (seen <= [LAYOUT.width + margin, LAYOUT.height + margin]).all(), look.name
        canvas = look.background(LAYOUT, margin)
        assert canvas.shape == (LAYOUT.height + 2 * margin, LAYOUT.width + 2 * margin, 3)
        # the belt goes on past the frame's right edge, the counter past its top
        lane = (LAYOUT.lane_top + LAYOUT.lane_bottom) // 2 + margin
        inner = canvas[lane - 20 : lane + 20, margin + LAYOUT.width - 60 : margin + LAYOUT.width]
        outer = canvas[lane - 20 : lane + 20, margin + LAYOUT.width :][:, :60]
        if margin >= 60:
            assert np.abs(inner.mean(axis=(0, 1)) - outer.mean(axis=(0, 1))).max() < 15


def test_the_store_has_its_own_lane_and_light(world: World) -> None:
    for look in STORE_LOOKS.values():
        background = look.background(LAYOUT)
        assert background.shape == (LAYOUT.height, LAYOUT.width, 3)
        assert np.array_equal(background, look.background(LAYOUT))
        belt = background[LAYOUT.lane_top + 5 : LAYOUT.lane_bottom - 5, LAYOUT.scan_x[1] + 5 :]
        assert np.ptp(belt.reshape(-1, 3).mean(axis=0)) > 30, f"{look.name}: a coloured belt"
        assert belt.std() > 10, f"{look.name}: a patterned belt"
        bootstrap = lane_background(LAYOUT, 0)
        assert np.abs(background.astype(int) - bootstrap.astype(int)).mean() > 30
        light = look.light(LAYOUT.width, LAYOUT.height)
        assert light.max() - light.min() > 0.3, f"{look.name}: light falls across the lane"
    scenarios = [build_scenario("honest", seed, world, fps=10.0) for seed in (1, 2, 3)]
    look = STORE_LOOKS[DEFAULT_STORE_LOOK]
    gains = [SceneRenderer(s, world, store=look).look.gain for s in scenarios]
    assert all(abs(g / look.gain - 1) <= 0.05 for g in gains) and len(set(gains)) == 3
    assert all(
        SceneRenderer(s, world, store=look).look.white_balance == look.white_balance
        for s in scenarios
    )


def test_a_store_may_stock_the_redesigned_packaging(world: World) -> None:
    scenario = build_scenario("honest", 1, world, fps=10.0)
    item = next(
        a for a in scenario.items if a.code is not None and not world.by_code[a.code].is_produce
    )
    look = STORE_LOOKS[DEFAULT_STORE_LOOK]
    usual = SceneRenderer(scenario, world, store=look).sprite_for(item)
    redesigned = SceneRenderer(
        scenario, world, store=replace(look, packaging_version=REDESIGN_VERSION)
    ).sprite_for(item)
    assert usual.bgr.shape != redesigned.bgr.shape or not np.array_equal(usual.bgr, redesigned.bgr)


def test_an_unknown_store_look_is_refused_naming_the_known_ones() -> None:
    assert store_look(DEFAULT_STORE_LOOK) is STORE_LOOKS[DEFAULT_STORE_LOOK]
    assert len(STORE_LOOKS) >= 2
    with pytest.raises(ValueError, match="no_such_store") as refused:
        store_look("no_such_store")
    for name in STORE_LOOKS:
        assert name in str(refused.value)
