"""The lane's per-frame loop: detect -> track -> count -> (on count) recognise.

With ``detect_interval`` N > 1 the detector runs on every Nth frame only, as NVIDIA DeepStream's
``interval`` does: the frames between are coasted (each track moves on by its Kalman motion
model), and tracking, counting and recognition work on the detected frames. On a small board
this is the difference between a detector that keeps up with the camera and one that does not;
the counting benchmark measures what it costs in counts.

Everything but the detector's session.run is the pipeline's overhead, kept small on purpose:
tracking is a few small matrix operations, counting a point-in-polygon test per track, and the
embedder runs only when an item counts, on its few sharpest crops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from checkout_node.models import LaneModels
from checkout_node.vision.counting import CountingConfig, LaneZones, ZoneCounter
from checkout_node.vision.detector import Detections, Detector
from checkout_node.vision.recogniser import Band, TrackRecogniser
from checkout_node.vision.tracker import ByteTracker, Track, TrackerConfig
from laneguard.embedding import Embedder

PRODUCT, HAND, NON_MERCHANDISE = 0, 1, 2
# Products and non-merchandise are one kind of thing to detect and track (objects on the lane);
# what each object is gets decided over its track's lifetime. Hands are tracked on their own.
NMS_GROUPS = {PRODUCT: 0, HAND: 1, NON_MERCHANDISE: 0}


@dataclass(frozen=True)
class CountedItem:
    """An item that passed into the bagging area, with its identity and evidence."""

    track_id: int
    code: str | None
    band: Band
    score: float
    runner_up: str | None
    entered_s: float
    crossed_s: float
    box: tuple[int, int, int, int]
    crop_jpeg: bytes
    candidates: tuple[tuple[str, float], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "item",
            "track_id": self.track_id,
            "code": self.code,
            "band": self.band,
            "score": round(self.score, 4),
            "runner_up": self.runner_up,
            "entered_s": round(self.entered_s, 3),
            "crossed_s": round(self.crossed_s, 3),
            "box": list(self.box),
            "crop_bytes": len(self.crop_jpeg),
            "candidates": [[code, score] for code, score in self.candidates],
        }


@dataclass
class FrameResult:
    index: int
    t: float
    detections: Detections
    products: list[Track]
    others: dict[int, list[Track]]
    counted: list[CountedItem]
    seconds: float
    detector_seconds: float


@dataclass
class PipelineStats:
    frames: int = 0
    seconds: float = 0.0
    detector_seconds: float = 0.0
    embeds: int = 0
    detected_frames: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def overhead_share(self) -> float:
        """Share of frame time spent outside the detector's session.run."""
        return 1 - self.detector_seconds / self.seconds if self.seconds else 0.0


@dataclass
class LanePipeline:
    models: LaneModels
    zones: LaneZones
    threads: int | None = None  # default: the hardware profile's
    tracker_config: TrackerConfig = field(default_factory=TrackerConfig)
    counting_config: CountingConfig = field(default_factory=CountingConfig)
    # Hands never count; tracking them only serves pictures of the lane (annotated video).
    track_hands: bool = False
    detect_interval: int = 1  # run the detector on every Nth frame (see the module's doc)

    def __post_init__(self) -> None:
        if self.detect_interval < 1:
            raise ValueError(f"detect_interval must be 1 or more, got {self.detect_interval}")
        if self.threads is None:
            self.threads = self.models.threads
        # The tracker and counter count detected frames; their waits are kept in seconds.
        every = self.detect_interval
        self.tracker_config = replace(
            self.tracker_config, max_missed=-(-self.tracker_config.max_missed // every)
        )
        self.counting_config = replace(
            self.counting_config, alias_frames=-(-self.counting_config.alias_frames // every)
        )
        self.detector = Detector(
            self.models.path(self.models.detector),
            self.threads,
            confidence=self.tracker_config.low_score,
            nms_groups=[NMS_GROUPS[c] for c in sorted(NMS_GROUPS)],
        )
        embedder = Embedder(self.models.path(self.models.embedder), threads=self.threads)
        thresholds = self.models.manifest.thresholds
        self.recogniser = TrackRecogniser(
            embedder, self.models.gallery, thresholds.t1, thresholds.t2
        )
        self.object_tracker = ByteTracker(self.tracker_config, first_id=1)
        self.hand_tracker = ByteTracker(self.tracker_config, first_id=1_000_001)
        self.counter = ZoneCounter(self.zones, self.counting_config)
        self.first_seen: dict[int, float] = {}
        self.stats = PipelineStats()
        self._index = 0
        self._last_detections = Detections.empty()

    def process(self, frame: np.ndarray, t: float) -> FrameResult:
        start = time.perf_counter()
        if self._index % self.detect_interval:
            return self._coast(t, start)
        detections = self.detector.detect(frame)
        found = detections.of_classes(PRODUCT, NON_MERCHANDISE)
        objects = self.object_tracker.update(found.boxes, found.scores, found.class_scores)
        hands: list[Track] = []
        if self.track_hands:
            held = detections.of_classes(HAND)
            hands = self.hand_tracker.update(held.boxes, held.scores)
        for track in objects:
            self.first_seen.setdefault(track.track_id, t)
        crossings = self.counter.update(objects, countable=is_product)
        counted = [self._counted(c.track_id, t) for c in crossings]
        for track in objects:  # the counter has placed each track in its zone this frame
            zone = self.counter.states[track.track_id].zone
            if track.detected_box is not None and zone != "bagging":
                self.recogniser.observe(frame, track.track_id, track.detected_box)
        self._forget_gone()
        self._last_detections = detections
        self.stats.detected_frames += 1
        self.stats.detector_seconds += self.detector.last_inference_s
        self.stats.embeds = self.recogniser.embeds
        return self._result(t, start, detections, objects, hands, counted)

    def _coast(self, t: float, start: float) -> FrameResult:
        """A frame between detections: tracks move on by their motion; nothing counts."""
        objects = self.object_tracker.coast()
        hands = self.hand_tracker.coast() if self.track_hands else []
        return self._result(t, start, self._last_detections, objects, hands, [], detected=False)

    def _result(
        self,
        t: float,
        start: float,
        detections: Detections,
        objects: list[Track],
        hands: list[Track],
        counted: list[CountedItem],
        detected: bool = True,
    ) -> FrameResult:
        elapsed = time.perf_counter() - start
        self.stats.frames += 1
        self.stats.seconds += elapsed
        result = FrameResult(
            self._index,
            t,
            detections,
            [track for track in objects if is_product(track)],
            {HAND: hands, NON_MERCHANDISE: [track for track in objects if not is_product(track)]},
            counted,
            elapsed,
            self.detector.last_inference_s if detected else 0.0,
        )
        self._index += 1
        return result

    def _counted(self, track_id: int, t: float) -> CountedItem:
        identity = self.recogniser.identify(track_id)
        if identity is None:
            return CountedItem(
                track_id,
                None,
                "unknown",
                0.0,
                None,
                self.first_seen.get(track_id, t),
                t,
                (0, 0, 0, 0),
                b"",
            )
        ok, jpeg = cv2.imencode(".jpg", identity.crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
        x1, y1, x2, y2 = (round(float(v)) for v in identity.box)
        return CountedItem(
            track_id,
            identity.code,
            identity.band,
            identity.score,
            identity.runner_up,
            self.first_seen.get(track_id, t),
            t,
            (x1, y1, x2, y2),
            jpeg.tobytes() if ok else b"",
            identity.candidates,
        )

    def _forget_gone(self) -> None:
        live = {t.track_id for t in self.object_tracker.tracks}
        for track_id in [t for t in self.first_seen if t not in live]:
            self.first_seen.pop(track_id, None)
            self.recogniser.forget(track_id)
        self.counter.forget(live)


def is_product(track: Track) -> bool:
    """Merchandise, by the class scores of the track's whole lifetime."""
    return track.label == PRODUCT
