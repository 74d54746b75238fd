"""Which detections start a track, with and without the verifier's second look
(``checkout_node.vision.tracker.births``, used by ``ByteTracker.update`` and by
`eval scenes`)."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_node.vision.tracker import (
    NOT_PRODUCT_VERDICT,
    PRODUCT_VERDICT,
    UNJUDGED,
    WAITING,
    ByteTracker,
    TrackerConfig,
    births,
)

SCORES = np.array([0.9, 0.3, 0.6, 0.2, 0.45, 0.1], np.float32)
ALL = np.arange(len(SCORES))


def verdicts_by_index(table: dict[int, int]) -> tuple[list[list[int]], object]:
    """A second look that answers from ``table`` and records what it was shown."""
    shown: list[list[int]] = []

    def look(candidates: np.ndarray) -> np.ndarray:
        shown.append(candidates.tolist())
        return np.array([table.get(int(c), UNJUDGED) for c in candidates], np.int8)

    return shown, look


def test_without_a_look_only_confident_detections_start_tracks() -> None:
    assert births(ALL, SCORES, TrackerConfig(), None).tolist() == [0, 2]


def test_the_look_is_shown_every_candidate_from_the_verify_score_best_first() -> None:
    shown, look = verdicts_by_index({})
    births(ALL, SCORES, TrackerConfig(), look)  # type: ignore[arg-type]
    assert shown == [[0, 2, 4, 1]]  # 0.9, 0.6, 0.45, 0.3; not 0.2 or 0.1


def test_a_yes_backs_an_unsure_detection_and_a_no_refuses_a_confident_one() -> None:
    _, look = verdicts_by_index(
        {0: NOT_PRODUCT_VERDICT, 2: PRODUCT_VERDICT, 4: PRODUCT_VERDICT, 1: NOT_PRODUCT_VERDICT}
    )
    assert births(ALL, SCORES, TrackerConfig(), look).tolist() == [2, 4]  # type: ignore[arg-type]


def test_unjudged_candidates_fall_back_to_the_detectors_score() -> None:
    _, look = verdicts_by_index({})  # slivers, or not merchandise-class: not the look's to judge
    assert births(ALL, SCORES, TrackerConfig(), look).tolist() == [0, 2]  # type: ignore[arg-type]


def test_candidates_waiting_for_a_look_start_nothing_yet_however_confident() -> None:
    _, look = verdicts_by_index({0: WAITING, 2: PRODUCT_VERDICT, 4: WAITING})
    assert births(ALL, SCORES, TrackerConfig(), look).tolist() == [2]  # type: ignore[arg-type]


def test_a_look_that_answers_for_the_wrong_number_of_candidates_is_an_error() -> None:
    with pytest.raises(ValueError, match="verdicts for 4 candidates"):
        births(ALL, SCORES, TrackerConfig(), lambda c: np.ones(2, np.int8))


def test_the_tracker_starts_a_backed_low_score_box_and_keeps_it_by_its_track() -> None:
    """A product the detector scores 0.3 frame after frame: with the look's yes it gets a
    track, which then carries on through the low-score round without another look."""
    tracker = ByteTracker(TrackerConfig())
    box = np.array([[100, 100, 160, 170]], np.float32)
    low = np.array([0.3], np.float32)
    assert tracker.update(box, low) == []  # no look: never confident enough
    shown, look = verdicts_by_index({0: PRODUCT_VERDICT})
    tracks = tracker.update(box, low, verify=look)  # type: ignore[arg-type]
    assert len(tracks) == 1 and shown == [[0]]
    for step in range(1, 4):
        moved = box + np.float32(step * 4)
        tracks = tracker.update(moved, low, verify=look)  # type: ignore[arg-type]
        assert [t.track_id for t in tracks] == [1]
    assert shown == [[0]]  # matched detections are never shown again
    assert tracks[0].confirmed


def test_an_item_lost_behind_a_hand_comes_back_to_its_own_track_not_a_new_one() -> None:
    """Back at a low score after two frames hidden, the item lies on its lost track: no
    birth, even with the look's yes; its next confident box finds the old track."""
    tracker = ByteTracker(TrackerConfig())
    box = np.array([[100, 100, 160, 170]], np.float32)
    _, look = verdicts_by_index({0: PRODUCT_VERDICT})
    for _ in range(4):
        tracks = tracker.update(box, np.array([0.8], np.float32), verify=look)  # type: ignore[arg-type]
    assert [t.track_id for t in tracks] == [1] and tracks[0].confirmed
    nothing = np.zeros((0, 4), np.float32)
    for _ in range(2):
        tracker.update(nothing, np.zeros(0, np.float32), verify=look)  # type: ignore[arg-type]
    back = tracker.update(box, np.array([0.3], np.float32), verify=look)  # type: ignore[arg-type]
    assert back == [] and len(tracker.tracks) == 1  # no second id for the same item
    found = tracker.update(box, np.array([0.8], np.float32), verify=look)  # type: ignore[arg-type]
    assert [t.track_id for t in found] == [1]


def test_a_part_of_a_tracked_item_starts_no_track_of_its_own() -> None:
    tracker = ByteTracker(TrackerConfig())
    whole = np.array([[100, 100, 200, 200]], np.float32)
    _, look = verdicts_by_index({0: PRODUCT_VERDICT, 1: PRODUCT_VERDICT})
    tracker.update(whole, np.array([0.9], np.float32), verify=look)  # type: ignore[arg-type]
    half = np.array([[100, 100, 200, 200], [100, 100, 150, 200]], np.float32)
    tracks = tracker.update(half, np.array([0.9, 0.3], np.float32), verify=look)  # type: ignore[arg-type]
    assert [t.track_id for t in tracks] == [1]
