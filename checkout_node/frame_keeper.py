"""Detection frames kept from the lane's own camera, so the detector can learn this store.

The detector was trained on rendered scenes; a store's belt, light, camera height and products
differ. Honest transactions label frames for free: every item the lane counted matched a scan,
so the boxes of its track are true boxes, labelled by the track's class over its whole
lifetime. Other frames are "of interest" for a larger model or a person to label: detections
between T2 and T1 that no track took (``low_score``), the frames around a scan no item was seen
for (the detector missed something there: ``unseen_scan``), and a box the cashier said was
not an item (``not_an_item``).

While frames pass, the keeper holds candidates (a copy of a frame with its boxes) every
``every_s``; when the ring is full it keeps every other one and halves its rate, so a long
transaction is still covered end to end in bounded memory. When the transaction ends it picks
a few frames per counted track, sharp and spread along the track, and hands them on
(``FrameOutput``): nothing here encodes or filters a frame, the sender does (privacy first).
A daily quota bounds what one lane sends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from checkout_node.reconcile.reconciler import Outcome
from checkout_node.vision.pipeline import HAND, NON_MERCHANDISE, PRODUCT, FrameResult
from checkout_node.vision.tracker import Track, iou_matrix
from laneguard.files import write_json_atomic
from laneguard.wire import FrameBox, FrameReason

LABELS = {PRODUCT: "product", NON_MERCHANDISE: "non_merchandise", HAND: "hand"}
HELD_ALERTS = 8  # alerted tracks whose frames wait for the cashier's "not an item"
SAME_OBJECT_IOU = 0.5  # a detection this close to a tracked box is that track's
LEAD_S = 2.0  # a transaction's frames may start this long before it (an item before the scan)


@dataclass(frozen=True)
class FrameKeeperConfig:
    """How many frames a lane keeps; the defaults sent 6 frames from a rendered 6-7 item
    honest checkout."""

    every_s: float = 0.25  # a candidate this often while something is in view
    candidates: int = 32  # frames held at once (640x480: ~30 MB at most)
    per_track: int = 2  # frames per counted item, spread along its track
    per_transaction: int = 6  # honest frames per transaction
    of_interest_per_transaction: int = 2  # per reason
    per_day: int = 200  # frames a lane sends a day, all reasons together
    t1: float = 0.5  # at or above: the detector's box is taken as true (the new-track score)
    t2: float = 0.25  # below: nothing; between: of interest
    unseen_scan_window_s: float = 1.5  # frames this close to a scan nothing was seen for


@dataclass
class TrackBox:
    box: np.ndarray
    score: float
    sharpness: float  # variance of the Laplacian over the box: blur from motion scores low


@dataclass
class Candidate:
    """A frame held while its transaction runs: the image and what the detector made of it."""

    t: float
    image: np.ndarray
    tracks: dict[int, TrackBox]
    loose: list[tuple[np.ndarray, float, int]]  # (box, score, class): detections no track took


@dataclass(frozen=True)
class KeptFrame:
    """A frame chosen to leave the lane, not yet privacy-filtered or encoded."""

    transaction_id: str
    reason: FrameReason
    t: float
    image: np.ndarray
    boxes: tuple[FrameBox, ...]
    model_version: str


FrameOutput = Callable[[KeptFrame], None]


@dataclass
class FrameKeeperStats:
    kept: int = 0  # frames handed to the sender
    over_quota: int = 0  # frames chosen but not sent: the day's quota was spent
    thinned: int = 0  # times the candidate ring halved its rate


@dataclass
class DailyQuota:
    """Frames sent today (UTC), remembered in a file so a restart does not reset the count."""

    path: Path | None
    per_day: int
    day: date = field(default_factory=lambda: datetime.now(timezone.utc).date())
    used: int = 0

    def __post_init__(self) -> None:
        if self.path is not None and self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                if saved.get("day") == self.day.isoformat():
                    self.used = int(saved.get("used", 0))
            except (ValueError, OSError, AttributeError, TypeError):
                self.used = self.per_day  # unreadable: send nothing more today, never more

    def take(self, n: int) -> int:
        """How many of ``n`` frames may go now (and counts them)."""
        today = datetime.now(timezone.utc).date()
        if today != self.day:
            self.day, self.used = today, 0
        granted = max(0, min(n, self.per_day - self.used))
        if granted:
            self.used += granted
            if self.path is not None:
                body = {"day": self.day.isoformat(), "used": self.used}
                write_json_atomic(self.path, body, mode=0o600)
        return granted


class FrameKeeper:
    """Holds candidate frames while a transaction runs; picks the ones to send at its end.

    ``observe`` runs on the camera thread, ``finish`` and ``not_an_item`` on whichever thread
    ends the transaction or resolves the alert: one lock guards the ring."""

    def __init__(
        self,
        output: FrameOutput,
        config: FrameKeeperConfig | None = None,
        quota_file: Path | None = None,
    ) -> None:
        self.output = output
        self.config = config or FrameKeeperConfig()
        self.quota = DailyQuota(quota_file, self.config.per_day)
        self.stats = FrameKeeperStats()
        self._ring: list[Candidate] = []
        self._interval = self.config.every_s
        self._last_kept_t: float | None = None
        self._labels: dict[int, int] = {}  # track -> its lifetime class, as last seen
        self._generation = 0  # bumped at each transaction's end and start
        # (transaction, track) -> its frames, the bundle that boxed them, the tracks' classes
        self._held: dict[tuple[str, int], tuple[list[Candidate], str, dict[int, int]]] = {}
        self._lock = threading.Lock()

    # -- while frames pass ------------------------------------------------------------------
    def observe(self, image: np.ndarray, result: FrameResult) -> None:
        """A processed frame. Only detected frames become candidates: between detections
        (``detect_interval`` > 1) the boxes are an earlier frame's, not this image's."""
        tracks = [*result.products, *result.others.get(NON_MERCHANDISE, [])]
        with self._lock:
            for track in tracks:
                self._labels[track.track_id] = track.label
            due = self._last_kept_t is None or result.t - self._last_kept_t >= self._interval
            if not (due and result.detected and (tracks or len(result.detections))):
                return
            self._last_kept_t = result.t
            generation = self._generation
        candidate = self._candidate(image, result, tracks)
        if candidate.tracks or candidate.loose:
            with self._lock:
                if generation != self._generation:
                    return  # a transaction ended while it was made: it belongs to neither
                self._ring.append(candidate)
                if len(self._ring) > self.config.candidates:
                    self._ring = self._ring[::-2][::-1]  # every other one, the newest kept
                    self._interval *= 2
                    self.stats.thinned += 1

    def _candidate(self, image: np.ndarray, result: FrameResult, tracks: list[Track]) -> Candidate:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes: dict[int, TrackBox] = {}
        for track in tracks:
            if track.detected_box is not None:
                box = np.asarray(track.detected_box, np.float32).copy()
                boxes[track.track_id] = TrackBox(box, float(track.score), _sharpness(grey, box))
        detections = result.detections
        loose: list[tuple[np.ndarray, float, int]] = []
        if len(detections):
            taken = np.zeros(len(detections), bool)
            if boxes:
                tracked = np.stack([b.box for b in boxes.values()])
                taken = iou_matrix(detections.boxes, tracked).max(axis=1) >= SAME_OBJECT_IOU
            for index in np.flatnonzero(~taken):
                score = float(detections.scores[index])
                if score >= self.config.t2:
                    box = detections.boxes[index].astype(np.float32).copy()
                    loose.append((box, score, int(detections.classes[index])))
        return Candidate(result.t, image.copy(), boxes, loose)

    def start(self, t: float) -> None:
        """A transaction starts at ``t``: candidates from before it (what lay in view between
        customers) go, and the rate is back to ``every_s``."""
        with self._lock:
            self._ring = [c for c in self._ring if c.t >= t - LEAD_S]
            self._interval = self.config.every_s
            self._generation += 1

    # -- at the transaction's end -----------------------------------------------------------
    def finish(self, outcome: Outcome, started_s: float, model_version: str) -> None:
        """Choose and hand on this transaction's frames; frames up to its end leave the ring."""
        with self._lock:
            mine = [c for c in self._ring if started_s - LEAD_S <= c.t <= outcome.ended_s]
            self._ring = [c for c in self._ring if c.t > outcome.ended_s]
            self._interval = self.config.every_s
            self._generation += 1
            labels = dict(self._labels)
            self._labels = {}
            self._hold_alerted(outcome, mine, model_version, labels)
        counted = _sure_tracks(outcome)
        chosen: list[KeptFrame] = []
        if outcome.honest:
            for candidate in self._honest_frames(mine, counted):
                boxes = self._boxes(candidate, counted, labels)
                chosen.append(self._kept(outcome, "honest", candidate, boxes, model_version))
        sent = {frame.t for frame in chosen}
        of_interest: tuple[tuple[FrameReason, list[Candidate]], ...] = (
            ("low_score", self._low_score_frames(mine)),
            ("unseen_scan", self._unseen_scan_frames(mine, outcome)),
        )
        for reason, frames in of_interest:
            for candidate in frames:
                if candidate.t in sent:
                    continue  # one frame leaves once, for its first reason
                sent.add(candidate.t)
                boxes = self._boxes(candidate, counted, labels)
                chosen.append(self._kept(outcome, reason, candidate, boxes, model_version))
        for alert in outcome.alerts:
            if alert.resolution == "not_an_item" and alert.track_id is not None:
                chosen += self._not_an_item(outcome.transaction_id, alert.track_id)
        self._send(chosen)

    def not_an_item(self, transaction_id: str, track_id: int) -> None:
        """The cashier said the item an alert named is not one: its frames show a false box."""
        self._send(self._not_an_item(transaction_id, track_id))

    def _not_an_item(self, transaction_id: str, track_id: int) -> list[KeptFrame]:
        with self._lock:
            held = self._held.pop((transaction_id, track_id), None)
        if held is None:
            return []
        candidates, model_version, labels = held
        return [
            KeptFrame(
                transaction_id,
                "not_an_item",
                candidate.t,
                candidate.image,
                self._boxes(candidate, set(), labels, false_track=track_id),
                model_version,
            )
            for candidate in candidates
        ]

    def _hold_alerted(
        self, outcome: Outcome, mine: list[Candidate], model_version: str, labels: dict[int, int]
    ) -> None:
        """Keep the sharpest frames of each alerted item until its alert is resolved (the
        cashier may say "not an item" after the transaction ended). Called under the lock."""
        for alert in outcome.alerts:
            track = alert.track_id
            if track is None or alert.status == "withdrawn":
                continue
            showing = [c for c in mine if track in c.tracks]
            showing.sort(key=lambda c: c.tracks[track].sharpness, reverse=True)
            if showing:
                self._held[(outcome.transaction_id, track)] = (showing[:1], model_version, labels)
        while len(self._held) > HELD_ALERTS:
            self._held.pop(next(iter(self._held)))

    def _honest_frames(self, mine: list[Candidate], counted: set[int]) -> list[Candidate]:
        """Per counted track, the sharpest frame in each of ``per_track`` stretches of its
        time in view; the frames showing the most counted tracks first, up to the cap. Only
        frames with a box for every counted item in view then: an item the detector missed on
        a frame would be taught there as background."""
        spans = {
            track: (min(times), max(times))
            for track in counted
            if (times := [c.t for c in mine if track in c.tracks])
        }
        whole = [
            c
            for c in mine
            if all(track in c.tracks for track, (a, b) in spans.items() if a <= c.t <= b)
        ]
        chosen: dict[int, Candidate] = {}
        for track in sorted(counted):
            showing = [c for c in whole if track in c.tracks]
            for part in _stretches(showing, self.config.per_track):
                best = max(part, key=lambda c: c.tracks[track].sharpness)
                chosen[id(best)] = best
        ranked = sorted(chosen.values(), key=lambda c: len(counted & c.tracks.keys()), reverse=True)
        return sorted(ranked[: self.config.per_transaction], key=lambda c: c.t)

    def _low_score_frames(self, mine: list[Candidate]) -> list[Candidate]:
        band = [c for c in mine if any(score < self.config.t1 for _, score, _ in c.loose)]
        band.sort(
            key=lambda c: sum(score < self.config.t1 for _, score, _ in c.loose), reverse=True
        )
        return sorted(band[: self.config.of_interest_per_transaction], key=lambda c: c.t)

    def _unseen_scan_frames(self, mine: list[Candidate], outcome: Outcome) -> list[Candidate]:
        unseen = [s for s in outcome.scans if s.event_id in outcome.unseen_scans]
        window = self.config.unseen_scan_window_s
        out: list[Candidate] = []
        for scan in unseen:
            near = [c for c in mine if abs(c.t - scan.t) <= window and c not in out]
            if near:
                out.append(min(near, key=lambda c: abs(c.t - scan.t)))
        return out[: self.config.of_interest_per_transaction]

    def _boxes(
        self,
        candidate: Candidate,
        counted: set[int],
        labels: dict[int, int],
        false_track: int | None = None,
    ) -> tuple[FrameBox, ...]:
        """Every box on the frame: counted tracks (and other tracked objects' lifetime class)
        as tracks; a product track no scan accounted for, and loose detections under T1, of
        interest; hands by the detector's score alone (no scan accounts for a hand)."""
        boxes: list[tuple[np.ndarray, str, str, float, int | None]] = []
        for track, seen in candidate.tracks.items():
            label = labels.get(track, PRODUCT)
            if track == false_track:
                kind = "not_an_item"
            elif label == PRODUCT and track not in counted:
                kind = "of_interest"
            else:
                kind = "track"
            boxes.append((seen.box, LABELS.get(label, "product"), kind, seen.score, track))
        for box, score, cls in candidate.loose:
            true_hand = cls == HAND and score >= self.config.t1
            kind = "track" if true_hand else "of_interest"
            boxes.append((box, LABELS.get(cls, "product"), kind, score, None))
        height, width = candidate.image.shape[:2]
        return tuple(b for b in (_frame_box(*box, width, height) for box in boxes) if b is not None)

    def _kept(
        self,
        outcome: Outcome,
        reason: FrameReason,
        candidate: Candidate,
        boxes: tuple[FrameBox, ...],
        model_version: str,
    ) -> KeptFrame:
        return KeptFrame(
            outcome.transaction_id, reason, candidate.t, candidate.image, boxes, model_version
        )

    def _send(self, frames: Iterable[KeptFrame]) -> None:
        frames = list(frames)
        granted = self.quota.take(len(frames)) if frames else 0
        self.stats.over_quota += len(frames) - granted
        for frame in frames[:granted]:
            self.stats.kept += 1
            self.output(frame)


def _sure_tracks(outcome: Outcome) -> set[int]:
    """Tracks a scan accounted for: when a scan had no item seen, only items the camera agreed
    with their scan about (the same rule as training samples)."""
    return {
        item.track_id
        for item, _, agreed in outcome.pairs
        if not outcome.unseen_scans or agreed == "agree"
    }


def _stretches(showing: list[Candidate], parts: int) -> list[list[Candidate]]:
    if not showing:
        return []
    parts = max(1, min(parts, len(showing)))
    bounds = np.linspace(0, len(showing), parts + 1).astype(int)
    return [showing[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _sharpness(grey: np.ndarray, box: np.ndarray) -> float:
    h, w = grey.shape
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(w, int(box[2])), min(h, int(box[3]))
    if x2 - x1 < 3 or y2 - y1 < 3:
        return 0.0
    return float(cv2.Laplacian(grey[y1:y2, x1:x2], cv2.CV_32F).var())


def _frame_box(
    box: np.ndarray, label: str, kind: str, score: float, track: int | None, width: int, height: int
) -> FrameBox | None:
    """The box clipped to the frame (a detector's box may reach past its edge); None when
    nothing of it is left inside."""
    x1, x2 = (float(np.clip(v, 0, width)) for v in (box[0], box[2]))
    y1, y2 = (float(np.clip(v, 0, height)) for v in (box[1], box[3]))
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return FrameBox(
        box=(round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)),
        label=label,
        kind=kind,
        score=min(1.0, max(0.0, round(score, 4))),
        track_id=track,
    )
