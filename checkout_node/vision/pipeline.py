"""The lane's per-frame loop: detect -> track -> count -> (on count) recognise.

With ``detect_interval`` N > 1 the detector runs on every Nth frame only, as NVIDIA DeepStream's
``interval`` does: the frames between are coasted (each track moves on by its Kalman motion
model), and tracking, counting and recognition work on the detected frames. On a small board
this is the difference between a detector that keeps up with the camera and one that does not;
the counting benchmark measures what it costs in counts.

Everything but the detector's session.run is the pipeline's overhead, kept small on purpose:
tracking is a few small matrix operations, counting a point-in-polygon test per track, and the
embedder runs only when an item counts, on its few sharpest crops.

The embedder does not run in the frame loop either (``embed_lag_frames`` > 0): when an item
counts, its crops go to a worker thread, and the counted item comes out of ``process`` exactly
that many frames later (waiting only if the worker is not done by then). A pretrained embedder
takes tens of milliseconds for an item, longer than a frame; in the worker it overlaps the
frames that follow instead of stalling one, and a fixed lag keeps replays deterministic.
``flush`` hands over the items still in the worker (end of a transaction, end of a video).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import cv2
import numpy as np

from checkout_node.model_bundle import LaneModels
from checkout_node.vision.counting import CountingConfig, LaneZones, LostItem, ZoneCounter
from checkout_node.vision.detector import Detections
from checkout_node.vision.detectors import (
    DEFAULT_BACKEND,
    DetectorConfig,
    FrameDetector,
    make_detector,
)
from checkout_node.vision.recogniser import Band, Identity, TrackRecogniser
from checkout_node.vision.tracker import UNJUDGED, BirthCheck, ByteTracker, Track, TrackerConfig
from checkout_node.vision.verifier import BirthVerifier, ProductVerifier, VerifierConfig
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
    identify_seconds: float = 0.0  # embedding the kept crops and the gallery look-up

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
    lost: list[LostItem] = field(default_factory=list)  # products lost in the scan area
    # False on a frame between detections (detect_interval > 1): its detections are the last
    # detected frame's, and its tracks coast.
    detected: bool = True


def encode_crop(crop: np.ndarray) -> bytes:
    """A crop as the JPEG the lane sends and shows (evidence, samples, pick lists); b"" when
    it cannot be encoded."""
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return jpeg.tobytes() if ok else b""


def lane_detector_config(
    threads: int, backend: str = DEFAULT_BACKEND, low_score: float | None = None
) -> DetectorConfig:
    """The detector as the lane runs it: every box down to the tracker's low score (``None``:
    the tracker's default), products and non-merchandise suppressed as one group."""
    return DetectorConfig(
        backend=backend,
        threads=threads,
        confidence=TrackerConfig().low_score if low_score is None else low_score,
        nms_groups=tuple(NMS_GROUPS[c] for c in sorted(NMS_GROUPS)),
    )


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
    embed_lag_frames: int = 3  # 0: identify in the frame the item counts (see the module's doc)
    # None: the bundle's detector on ``detector_backend`` (checkout_node.vision.detectors),
    # keeping boxes down to the tracker's low score.
    detector: FrameDetector | None = None
    detector_backend: str = DEFAULT_BACKEND
    # The second look at birth candidates, when the bundle carries a verifier; False: start
    # tracks on the detector's score alone.
    verify_births: bool = True
    verifier_config: VerifierConfig = field(default_factory=VerifierConfig)

    def __post_init__(self) -> None:
        if self.detect_interval < 1:
            raise ValueError(f"detect_interval must be 1 or more, got {self.detect_interval}")
        if self.embed_lag_frames < 0:
            raise ValueError(f"embed_lag_frames must be 0 or more, got {self.embed_lag_frames}")
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
        if self.detector is None:
            self.detector = make_detector(
                self.models.path(self.models.detector),
                lane_detector_config(
                    self.threads, self.detector_backend, self.tracker_config.low_score
                ),
            )
        self._detector: FrameDetector = self.detector
        self.birth_verifier: BirthVerifier | None = None
        if self.verify_births and self.models.verifier is not None:
            self.birth_verifier = BirthVerifier(
                ProductVerifier(self.models.path(self.models.verifier), self.threads),
                self.verifier_config,
            )
        # In the worker the embedder gets one thread: the detector keeps the others, and the
        # embedder's budget (trainer.bootstrap.EMBED_CROP_BUDGET_MS) is set for one thread.
        embedder = Embedder(
            self.models.path(self.models.embedder),
            threads=1 if self.embed_lag_frames else self.threads,
        )
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
        self._worker = (
            ThreadPoolExecutor(1, thread_name_prefix="embedder") if self.embed_lag_frames else None
        )
        # (frame index it is due, the worker's answer), in the order items counted
        self._pending: list[tuple[int, Future[CountedItem]]] = []
        self._pending_lock = threading.Lock()  # flush may come from another thread
        # Product tracks on the scan area in the last detected frame (a produce pick list is
        # asked for while the item lies on the scale, before it counts).
        self.on_scan_area: tuple[int, ...] = ()

    @property
    def identifying(self) -> bool:
        """Items have counted whose identity the worker has not handed over yet."""
        with self._pending_lock:
            return bool(self._pending)

    def flush(self) -> list[CountedItem]:
        """Every counted item still being identified, waiting for the worker."""
        with self._pending_lock:
            pending, self._pending = self._pending, []
        return [future.result() for _, future in pending]

    def identify_on_scan_area(self) -> Identity | None:
        """What the product on the scan area is, from its sharpest crops so far: the track with
        the most kept crops when several lie there; None when none does. Safe from another
        thread (it reads a snapshot of the track ids and copies of their crops)."""
        kept = max((self.recogniser.kept(t) for t in self.on_scan_area), key=len, default=[])
        return self.recogniser.identify(kept) if kept else None

    def lost_so_far(self) -> list[LostItem]:
        """Products lost in the scan area and not reported yet (see ZoneCounter.lost_so_far)."""
        return self.counter.lost_so_far()

    def close(self) -> None:
        """Stop the embedder's worker (after a flush); the pipeline is not used again."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)

    def _due(self, counted: list[CountedItem]) -> list[CountedItem]:
        """This frame's counted items: those counted now (no lag) or ``embed_lag_frames`` ago."""
        if not self._pending:  # most frames: nothing in the worker, no lock to take
            return counted
        with self._pending_lock:
            ready = [future for due, future in self._pending if due <= self._index]
            self._pending = self._pending[len(ready) :]
        return [future.result() for future in ready] + counted

    def process(self, frame: np.ndarray, t: float) -> FrameResult:
        start = time.perf_counter()
        if self._index % self.detect_interval:
            return self._coast(t, start)
        detections = self._detector.detect(frame)
        found = detections.of_classes(PRODUCT, NON_MERCHANDISE)
        objects = self.object_tracker.update(
            found.boxes, found.scores, found.class_scores, self._birth_check(frame, found)
        )
        hands: list[Track] = []
        if self.track_hands:
            held = detections.of_classes(HAND)
            hands = self.hand_tracker.update(held.boxes, held.scores)
        for track in objects:
            self.first_seen.setdefault(track.track_id, t)
        crossings = self.counter.update(objects, countable=is_product, t=t)
        counted = [c for c in (self._count(c.track_id, t) for c in crossings) if c is not None]
        on_scan_area = []
        for track in objects:  # the counter has placed each track in its zone this frame
            zone = self.counter.states[track.track_id].zone
            if track.detected_box is not None and zone != "bagging":
                self.recogniser.observe(frame, track.track_id, track.detected_box)
            if zone == "scan" and is_product(track):
                on_scan_area.append(track.track_id)
        self.on_scan_area = tuple(on_scan_area)  # one assignment: other threads read it whole
        lost = self._forget_gone()
        self._last_detections = detections
        self.stats.detected_frames += 1
        self.stats.detector_seconds += self._detector.last_inference_s
        self.stats.embeds = self.recogniser.embeds
        result = self._result(t, start, detections, objects, hands, counted)
        result.lost = lost
        return result

    def _birth_check(self, frame: np.ndarray, found: Detections) -> BirthCheck | None:
        """The verifier's verdicts on the frame's product candidates; a non-merchandise
        candidate is not its business and starts a track on its score alone."""
        verifier = self.birth_verifier
        if verifier is None:
            return None

        def check(candidates: np.ndarray) -> np.ndarray:
            verdicts = np.full(len(candidates), UNJUDGED, np.int8)
            products = found.classes[candidates] == PRODUCT
            if products.any():
                verdicts[products] = verifier.judge(
                    frame, found.boxes[candidates[products]], self._index
                )
            return verdicts

        return check

    def _coast(self, t: float, start: float) -> FrameResult:
        """A frame between detections: tracks move on by their motion; nothing new counts."""
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
            self._due(counted),
            elapsed,
            self._detector.last_inference_s if detected else 0.0,
            detected=detected,
        )
        self._index += 1
        return result

    def _count(self, track_id: int, t: float) -> CountedItem | None:
        """The item now, or None when it goes to the worker and comes out ``embed_lag_frames``
        later."""
        kept = self.recogniser.kept(track_id)
        entered = self.first_seen.get(track_id, t)
        if self._worker is None:
            return self._identified(track_id, entered, t, kept)
        future = self._worker.submit(self._identified, track_id, entered, t, kept)
        with self._pending_lock:
            self._pending.append((self._index + self.embed_lag_frames, future))
        return None

    def _identified(
        self,
        track_id: int,
        entered: float,
        t: float,
        kept: list[tuple[float, np.ndarray, np.ndarray]],
    ) -> CountedItem:
        start = time.perf_counter()
        identity = self.recogniser.identify(kept)
        item = self._counted(track_id, entered, t, identity)
        return replace(item, identify_seconds=time.perf_counter() - start)

    @staticmethod
    def _counted(track_id: int, entered: float, t: float, identity: Identity | None) -> CountedItem:
        if identity is None:
            return CountedItem(
                track_id,
                None,
                "unknown",
                0.0,
                None,
                entered,
                t,
                (0, 0, 0, 0),
                b"",
            )
        x1, y1, x2, y2 = (round(float(v)) for v in identity.box)
        return CountedItem(
            track_id,
            identity.code,
            identity.band,
            identity.score,
            identity.runner_up,
            entered,
            t,
            (x1, y1, x2, y2),
            encode_crop(identity.crop),
            identity.candidates,
        )

    def _forget_gone(self) -> list[LostItem]:
        live = {t.track_id for t in self.object_tracker.tracks}
        for track_id in [t for t in self.first_seen if t not in live]:
            self.first_seen.pop(track_id, None)
            self.recogniser.forget(track_id)
        return self.counter.forget(live)


def is_product(track: Track) -> bool:
    """Merchandise, by the class scores of the track's whole lifetime."""
    return track.label == PRODUCT
