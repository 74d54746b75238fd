"""Tracker, zone counter and detector decoding, on controlled inputs."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_node.vision.counting import LaneZones, ZoneCounter
from checkout_node.vision.detector import choose_providers, decode
from checkout_node.vision.tracker import ByteTracker, KalmanBox, Track, iou_matrix


def box_at(cx: float, cy: float, size: float = 80) -> np.ndarray:
    return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)


def run_path(
    tracker: ByteTracker,
    counter: ZoneCounter,
    xs: list[float],
    y: float = 240,
    scores: list[float] | None = None,
) -> tuple[set[int], int]:
    ids, counts = set(), 0
    for i, x in enumerate(xs):
        score = scores[i] if scores else 0.9
        if score <= 0:
            tracks = tracker.update(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        else:
            tracks = tracker.update(box_at(x, y)[None], np.array([score], np.float32))
        ids |= {t.track_id for t in tracks}
        counts += len(counter.update(tracks))
    return ids, counts


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    assert np.allclose(iou_matrix(a, b), [[1.0, 1 / 3, 0.0]], atol=1e-6)


def test_item_passing_counts_once_with_one_id() -> None:
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    ids, counts = run_path(tracker, counter, list(np.linspace(600, 40, 40)))
    assert len(ids) == 1 and counts == 1


def test_occlusion_keeps_the_id_and_low_scores_continue_the_track() -> None:
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    xs = list(np.linspace(600, 40, 40))
    scores = [0.9] * 12 + [0.0] * 5 + [0.3] * 5 + [0.9] * 18  # hidden by a hand, then half visible
    ids, counts = run_path(tracker, counter, xs, scores=scores)
    assert len(ids) == 1 and counts == 1


def test_hovering_over_the_boundary_and_reentry_count_once() -> None:
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    left = 640 * 0.34
    path = (
        list(np.linspace(600, left + 40, 12))
        + list(np.linspace(left + 40, left - 30, 4))
        + list(np.linspace(left - 30, 320, 6))
        + list(np.linspace(320, 60, 10))
        + list(np.linspace(60, 320, 8))
        + list(np.linspace(320, 40, 8))
    )
    ids, counts = run_path(tracker, counter, path)
    assert len(ids) == 1 and counts == 1


def test_flicker_and_tracks_born_in_bagging_never_count() -> None:
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    _, counts = run_path(tracker, counter, [300, 250, 200], scores=[0.9, 0.9, 0.9])
    assert counts == 0  # three frames: not confirmed and never two frames in bagging
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    _, counts = run_path(tracker, counter, list(np.linspace(150, 20, 20)))
    assert counts == 0  # appeared inside the bagging area: already counted or not an item


def test_two_items_side_by_side_keep_their_ids() -> None:
    tracker = ByteTracker()
    seen: dict[int, list[float]] = {}
    for x in np.linspace(600, 40, 30):
        boxes = np.stack([box_at(x, 150, 70), box_at(x + 10, 330, 70)])
        for track in tracker.update(boxes, np.array([0.9, 0.8], np.float32)):
            seen.setdefault(track.track_id, []).append(track.centre[1])
    assert len(seen) == 2
    assert all(np.ptp(ys) < 20 for ys in seen.values())  # no id swaps between the rows


def test_decode_maps_boxes_back_and_suppresses_duplicates() -> None:
    # Two anchors on the same product (one should be suppressed), one hand; letterbox of a
    # 640x480 frame into 320: scale 0.5, pad_y 40.
    raw = np.zeros((7, 4), np.float32)
    raw[:4, 0] = [160, 160, 40, 40]
    raw[:4, 1] = [162, 161, 40, 40]
    raw[:4, 2] = [100, 100, 20, 30]
    raw[:4, 3] = [10, 10, 5, 5]
    raw[4, 0], raw[4, 1] = 0.9, 0.8
    raw[5, 2] = 0.7
    raw[6, 3] = 0.05  # below confidence
    dets = decode(raw, 0.5, 0.0, 40.0, 640, 480, confidence=0.25, iou=0.5)
    assert len(dets) == 2
    product = dets.of_classes(0)
    assert np.allclose(product.boxes[0], [280, 200, 360, 280])  # (160 - 20 - 40) / 0.5 = 200
    assert dets.of_classes(1).scores[0] == pytest.approx(0.7)
    assert dets.class_scores.shape == (2, 3)


def test_decode_groups_classes_and_drops_parts_inside_a_stronger_box() -> None:
    # Anchor 0: a bag taken for a product (0.6) that also scores as non-merchandise (0.5);
    # anchor 1: the same bag as non-merchandise (0.55). Anchor 2: a label inside anchor 0's
    # box (a part of the item). Anchor 3: a hand over the bag: another group, kept.
    raw = np.zeros((7, 4), np.float32)
    raw[:4, 0] = [160, 160, 80, 80]
    raw[:4, 1] = [162, 160, 80, 80]
    raw[:4, 2] = [170, 165, 30, 30]
    raw[:4, 3] = [160, 160, 70, 70]
    raw[4:, 0] = [0.6, 0.0, 0.5]
    raw[4:, 1] = [0.1, 0.0, 0.55]
    raw[4:, 2] = [0.45, 0.0, 0.0]
    raw[4:, 3] = [0.0, 0.8, 0.0]
    by_class = decode(raw, 0.5, 0.0, 40.0, 640, 480, confidence=0.25, iou=0.5)
    assert sorted(by_class.classes.tolist()) == [0, 1, 2]  # per-class: the bag twice, no part
    grouped = decode(
        raw, 0.5, 0.0, 40.0, 640, 480, 0.25, 0.5, nms_groups=np.array([0, 1, 0], np.int32)
    )
    assert sorted(grouped.classes.tolist()) == [0, 1]
    bag = grouped.of_classes(0, 2)
    assert np.allclose(bag.class_scores[0], [0.6, 0.0, 0.5])  # every class's score kept


def test_track_label_is_decided_over_its_lifetime() -> None:
    # Something slides into the bagging area scoring a little more often as product than as
    # non-merchandise frame by frame, but far more as non-merchandise overall: never counted.
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    counts = 0
    for i, x in enumerate(np.linspace(600, 40, 40)):
        evidence = [0.5, 0.0, 0.45] if i % 3 else [0.1, 0.0, 0.9]
        tracks = tracker.update(
            box_at(x, 240)[None], np.array([max(evidence)], np.float32), np.array([evidence])
        )
        counts += len(counter.update(tracks, countable=lambda t: t.label == 0))
    assert tracker.tracks[0].label == 2
    assert counts == 0


def test_execution_providers_prefer_accelerators() -> None:
    assert choose_providers(["CPUExecutionProvider", "CUDAExecutionProvider"]) == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert choose_providers([]) == ["CPUExecutionProvider"]


def test_counted_item_lost_and_found_again_is_not_counted_twice() -> None:
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    crossing = list(np.linspace(600, 180, 20))
    lost = [180.0] * 25  # hidden long enough for the tracker to drop the track
    back = list(np.linspace(260, 60, 10))  # customer lifts it back over the scanner edge, re-bags
    scores = [0.9] * 20 + [0.0] * 25 + [0.9] * 10
    ids, counts = run_path(tracker, counter, crossing + lost + back, scores=scores)
    assert len(ids) == 2, "the tracker gave up and started a new track"
    assert counts == 1, "but the counter knows it is the same item"


def test_fast_hand_move_with_blurred_low_score_boxes_keeps_the_track() -> None:
    # At 15 fps the hand carries an item from the scanner into the bag in 3-4 frames: the box
    # jumps 60-70 px per frame, stretches with motion blur and scores low.
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    ids: set[int] = set()
    counts = 0
    frames = [(x, 0.8, 80) for x in np.linspace(600, 330, 12)] + [(330, 0.6, 80)] * 6
    frames += [(275, 0.3, 115), (205, 0.12, 125), (140, 0.12, 120), (100, 0.25, 90), (60, 0.4, 80)]
    for x, score, width in frames:
        box = np.array([[x - width / 2, 200, x + width / 2, 270]], np.float32)
        tracks = tracker.update(box, np.array([score], np.float32))
        ids |= {t.track_id for t in tracks}
        counts += len(counter.update(tracks))
    assert ids == {1} and counts == 1


def confirmed_track(track_id: int, x: float, y: float = 240) -> Track:
    box = box_at(x, y)
    return Track(track_id, box, 0.9, KalmanBox(box), hits=5, confirmed=True)


def test_track_switch_at_the_boundary_counts_the_item_once() -> None:
    # A fast move from the scanner into the bag (seen at 15 frames/s in the lane video): the
    # tracker gave the item's box to another detection and started a new track for the item
    # inside the bagging area, as the old one ended in the scan area.
    counter = ZoneCounter(LaneZones.standard())
    counts = sum(len(counter.update([confirmed_track(1, x)])) for x in np.linspace(600, 245, 14))
    counts += len(counter.update([confirmed_track(1, 240), confirmed_track(2, 160)]))
    for x in np.linspace(130, 30, 5):
        counts += len(counter.update([confirmed_track(2, x)]))
    assert counts == 1, "the new track in bagging continues the item"
    # Found again later (the tracker re-found the old track): still the one item.
    counts += len(counter.update([confirmed_track(1, 180)]))
    counts += sum(len(counter.update([confirmed_track(1, x)])) for x in (150, 120, 90))
    assert counts == 1


def test_an_item_still_in_the_scan_area_hands_nothing_over() -> None:
    # Something appears in the bagging area while the item at the scanner stays there: no count.
    tracker, counter = ByteTracker(), ZoneCounter(LaneZones.standard())
    counts = 0
    for frame in range(30):
        boxes = [box_at(600 - 15 * min(frame, 22), 240)]
        if frame >= 22:
            boxes.append(box_at(140 - 4 * (frame - 22), 300))
        tracks = tracker.update(np.stack(boxes), np.full(len(boxes), 0.9, np.float32))
        counts += len(counter.update(tracks))
    assert counts == 0


def test_coasting_moves_tracks_without_hits_or_misses() -> None:
    tracker = ByteTracker()
    for x in (400, 390, 380, 370):
        tracker.update(box_at(x, 240)[None], np.array([0.9], np.float32))
    (track,) = tracker.tracks
    hits = track.hits
    (coasted,) = tracker.coast()
    assert coasted.detected_box is None and coasted.hits == hits and coasted.missed == 0
    assert coasted.centre[0] < 370, "moved on by its velocity"
    (found,) = tracker.update(box_at(350, 240)[None], np.array([0.9], np.float32))
    assert found.track_id == track.track_id and found.hits == hits + 1


def test_a_product_and_a_phone_crossing_paths_keep_their_own_ids() -> None:
    # The product comes fast and stops at the scanner just where the phone lay, as the phone is
    # picked up and moved away: by motion and overlap alone the two swap ids (and the product,
    # carrying the phone's history, never counts). Their class histories keep them apart.
    tracker = ByteTracker()
    product = list(np.linspace(560, 380, 10)) + [340.0] * 12
    phone = [320.0] * 10 + list(np.linspace(360, 560, 12))
    classes = np.array([[0.9, 0.0, 0.05], [0.05, 0.0, 0.9]], np.float32)
    ids: dict[str, set[int]] = {"product": set(), "phone": set()}
    for x_product, x_phone in zip(product, phone):
        boxes = np.stack([box_at(x_product, 240), box_at(x_phone, 250)])
        for track in tracker.update(boxes, np.array([0.9, 0.9], np.float32), classes):
            assert track.detected_box is not None
            centre = float(track.detected_box[0] + track.detected_box[2]) / 2
            ids["product" if abs(centre - x_product) < 1 else "phone"].add(track.track_id)
    assert len(ids["product"]) == 1 and len(ids["phone"]) == 1
    assert ids["product"] != ids["phone"]


def test_a_product_lost_in_the_scan_area_is_reported_once_its_track_is_forgotten() -> None:
    """The evidence a scan without an item needs: a product followed into the scan area and
    lost there, never counted and not found again. Items that count, items that went back to
    the belt and non-merchandise report nothing."""
    counter = ZoneCounter(LaneZones.standard())
    lost_at = None
    frames = list(np.linspace(600, 320, 10)) + [None] * 70  # into the scan area, then gone
    reported = []
    for n, x in enumerate(frames):
        t = n / 30
        tracks = [] if x is None else [confirmed_track(1, x)]
        if x is not None:
            lost_at = t
        counter.update(tracks, t=t)
        reported += counter.forget({t.track_id for t in tracks})
    assert [(r.track_id, r.last_s) for r in reported] == [(1, lost_at)]

    counter = ZoneCounter(LaneZones.standard())
    reported = []
    paths = {
        2: list(np.linspace(600, 30, 20)),  # crossed: counted, not lost
        3: list(np.linspace(600, 320, 8)) + list(np.linspace(320, 600, 8)),  # back to the belt
    }
    for n in range(90):
        tracks = [confirmed_track(i, p[n]) for i, p in paths.items() if n < len(p)]
        counter.update(tracks, t=n / 30)
        reported += counter.forget({t.track_id for t in tracks})
    assert reported == []

    counter = ZoneCounter(LaneZones.standard())
    for n, x in enumerate(np.linspace(600, 320, 10)):  # a phone, never merchandise
        counter.update([confirmed_track(4, x)], countable=lambda _: False, t=n / 30)
    reported = []
    for n in range(10, 80):
        counter.update([], t=n / 30)
        reported += counter.forget(set())
    assert reported == [] and 4 not in counter.states


def test_a_product_just_lost_in_the_scan_area_is_known_before_it_is_forgotten() -> None:
    """A transaction that ends a moment after its last item vanished cannot wait the seconds
    forget takes: lost_so_far says it at once."""
    counter = ZoneCounter(LaneZones.standard())
    for n, x in enumerate(np.linspace(600, 320, 10)):
        counter.update([confirmed_track(1, x)], t=n / 30)
    assert counter.lost_so_far() == []  # still in sight
    counter.update([], t=10 / 30)
    assert [(lost.track_id, lost.last_s) for lost in counter.lost_so_far()] == [(1, 9 / 30)]
