"""Counting by zone: an item counts once, when its track passes from the scan area into the
bagging area.

The counter follows every object track (an object may be taken for non-merchandise for a while
and turn out to be a product); only those the caller calls countable count.
What must not count: a box that flickers for a few frames, an item hovered over the boundary
and brought back, an item taken back out of the bag and bagged again, a track that starts
inside the bagging area (an item already counted, found again after an occlusion), and anything
that is not merchandise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from checkout_node.vision.tracker import Track
from product_db.errors import LaneGuardError

Polygon = list[tuple[float, float]]


class ZonesError(LaneGuardError, ValueError):
    """A zones mapping (a lane's zones file) without a scan area and a bagging area of at least
    3 points each."""


@dataclass(frozen=True)
class LaneZones:
    """Polygons in frame pixels; the belt is everything that is in neither."""

    scan_area: Polygon
    bagging_area: Polygon

    @classmethod
    def standard(cls, width: int = 640, height: int = 480) -> LaneZones:
        """The simulator's (and a typical lane's) layout: bagging left, scan area in the middle."""
        top, bottom = height * 0.12, height * 0.88
        left, right = width * 0.34, width * 0.66
        return cls(
            scan_area=[(left, top), (right, top), (right, bottom), (left, bottom)],
            bagging_area=[(0, top), (left, top), (left, bottom), (0, bottom)],
        )

    @classmethod
    def from_mapping(cls, zones: dict[str, list[list[float]]]) -> LaneZones:
        for key in ("scan_area", "bagging_area"):
            if key not in zones or len(zones[key]) < 3:
                raise ZonesError(f"zones.{key}: a polygon of at least 3 [x, y] points is required")

        def polygon(points: list[list[float]]) -> Polygon:
            return [(float(p[0]), float(p[1])) for p in points]

        return cls(polygon(zones["scan_area"]), polygon(zones["bagging_area"]))

    def zone_of(self, point: tuple[float, float]) -> str:
        if _inside(self.bagging_area, point):
            return "bagging"
        if _inside(self.scan_area, point):
            return "scan"
        return "belt"


def _inside(polygon: Polygon, point: tuple[float, float]) -> bool:
    contour = np.asarray(polygon, np.float32).reshape(-1, 1, 2)
    return cv2.pointPolygonTest(contour, (float(point[0]), float(point[1])), False) >= 0


@dataclass(frozen=True, slots=True)
class CountingConfig:
    min_scan_frames: int = 2  # frames seen in the scan area before a crossing can count
    bagging_frames: int = 2  # consecutive frames in bagging that confirm a crossing
    alias_frames: int = 30  # a new track this soon after another vanished nearby ...
    alias_radius: float = 1.5  # ... within this many box sizes of it continues that item


@dataclass
class _TrackState:
    born_in: str
    zone: str
    centre: tuple[float, float] = (0.0, 0.0)
    size: float = 0.0
    last_frame: int = 0
    scan_frames: int = 0
    bagging_run: int = 0
    counted: bool = False
    born_frame: int = 0
    last_s: float = 0.0
    countable: bool = True


@dataclass(frozen=True, slots=True)
class LostItem:
    """A product the camera followed in the scan area and then lost there, uncounted: the
    evidence that an item was on the lane when a scan pays for nothing the camera counted."""

    track_id: int
    last_s: float


@dataclass(frozen=True, slots=True)
class Crossing:
    track_id: int
    frame: int


@dataclass
class ZoneCounter:
    zones: LaneZones
    config: CountingConfig = field(default_factory=CountingConfig)
    states: dict[int, _TrackState] = field(default_factory=dict)
    frame: int = 0

    def update(
        self,
        tracks: list[Track],
        countable: Callable[[Track], bool] | None = None,
        t: float = 0.0,
    ) -> list[Crossing]:
        """Feed the object tracks seen this frame (at stream time ``t``); returns the items
        that count now.

        ``countable`` says whether a track is merchandise (default: all are)."""
        self.frame += 1
        crossings = []
        live = {t.track_id for t in tracks}
        for track in tracks:
            zone = self.zones.zone_of(track.centre)
            state = self.states.get(track.track_id)
            if state is None:
                earlier = self._earlier_sighting(track, live)
                state = _TrackState(born_in=zone, zone=zone, born_frame=self.frame)
                if earlier is not None:  # the same item: keep its history, and its count
                    state.born_in, state.counted = earlier.born_in, earlier.counted
                    state.scan_frames = earlier.scan_frames
                    earlier.last_frame = -(10**9)  # consumed: no other track can claim it
                self.states[track.track_id] = state
            state.centre = track.centre
            state.size = float(max(track.box[2] - track.box[0], track.box[3] - track.box[1]))
            state.last_frame, state.last_s = self.frame, t
            state.countable = countable is None or countable(track)
            if zone == "scan":
                state.scan_frames += 1
            state.bagging_run = state.bagging_run + 1 if zone == "bagging" else 0
            state.zone = zone
            eligible = (
                not state.counted
                and track.confirmed
                and state.born_in != "bagging"
                and state.scan_frames >= self.config.min_scan_frames
                and state.bagging_run >= self.config.bagging_frames
                and state.countable
            )
            if eligible:
                state.counted = True
                crossings.append(Crossing(track.track_id, self.frame))
        self._hand_over_vanished(live)
        return crossings

    def _hand_over_vanished(self, live: set[int]) -> None:
        """An item in the scan area whose track ends just as a new track starts beside it in
        the bagging area crossed on a fast move: the tracker took the item's box for another
        one at the boundary and started it afresh. The new track continues the item (so it
        counts, once); the vanished one is spent, so it cannot count again if found later.
        A new track that took up the history of a flicker (fewer frames in the scan area than
        the vanished item) is an heir too."""
        for vanished in self.states.values():
            if (
                vanished.last_frame != self.frame - 1
                or vanished.zone != "scan"
                or vanished.counted
                or vanished.born_in == "bagging"
                or vanished.scan_frames < self.config.min_scan_frames
            ):
                continue
            reach = self.config.alias_radius * max(vanished.size, 1.0)
            heirs = [
                (_distance(state.centre, vanished.centre), track_id)
                for track_id, state in self.states.items()
                if track_id in live
                and not state.counted
                and state.zone == "bagging"
                and (state.born_in == "bagging" or state.scan_frames < vanished.scan_frames)
                and self.frame - state.born_frame <= self.config.bagging_frames + 1
            ]
            heirs = [(d, track_id) for d, track_id in heirs if d <= reach]
            if not heirs:
                continue
            heir = self.states[min(heirs)[1]]
            heir.born_in, heir.scan_frames = vanished.born_in, vanished.scan_frames
            vanished.counted = True
            vanished.last_frame = -(10**9)

    def _earlier_sighting(self, track: Track, live: set[int]) -> _TrackState | None:
        """The state of an item that vanished near here moments ago, if any: the tracker lost it
        behind a hand or on a sudden move and now sees it again under a new id. Counted items
        must not count twice, and an item lost at the boundary must still count once."""
        cx, cy = track.centre
        best, best_distance = None, float("inf")
        for track_id, state in self.states.items():
            if track_id in live or self.frame - state.last_frame > self.config.alias_frames:
                continue
            distance = _distance(state.centre, (cx, cy))
            reach = self.config.alias_radius * max(state.size, 1.0)
            if distance <= reach and distance < best_distance:
                best, best_distance = state, distance
        return best

    def forget(self, live_ids: set[int]) -> list[LostItem]:
        """Drop the state of tracks the tracker no longer knows, once they can no longer be
        the earlier sighting of an item found again (see _earlier_sighting); returns those
        that were products lost in the scan area, never counted and never found again."""
        horizon = 2 * self.config.alias_frames
        lost = []
        for track_id in [t for t in self.states if t not in live_ids]:
            state = self.states[track_id]
            if self.frame - state.last_frame <= horizon:
                continue
            if self._lost_in_scan_area(state):
                lost.append(LostItem(track_id, state.last_s))
            del self.states[track_id]
        return lost

    def lost_so_far(self) -> list[LostItem]:
        """Products out of sight in the scan area now, uncounted, that ``forget`` would report
        once they can no longer be found again: what a transaction ending now must not wait
        for (forget reports them later all the same)."""
        return [
            LostItem(track_id, state.last_s)
            for track_id, state in self.states.items()
            if state.last_frame < self.frame and self._lost_in_scan_area(state)
        ]

    def _lost_in_scan_area(self, state: _TrackState) -> bool:
        return (
            state.zone == "scan"
            and state.countable
            and not state.counted
            and state.born_in != "bagging"
            and state.scan_frames >= self.config.min_scan_frames
            and state.last_frame > 0  # not taken over by a later sighting
        )


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return float(((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) ** 0.5)
