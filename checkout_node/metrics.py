"""The lane's Prometheus metrics: what supermarket IT's monitoring scrapes from ``/metrics``.

Two kinds, kept apart on purpose. Latencies are histograms observed as frames and items come
out of the pipeline (``observe_frame``: two histogram observations, 1.2 microseconds here,
on the camera thread).
Everything else (frames, drops, tracks, counts, alerts, outbox, camera, bundle) is read from
the lane's own state when Prometheus scrapes, so the frame loop does no bookkeeping for it and
the figures cannot drift from what the lane itself reports in its heartbeat.

Each lane has its own registry (not the library's global one), so several lanes in one
process, as in tests and evaluations, do not mix their figures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from checkout_node.frame_sender import FrameSender
from checkout_node.lane import Lane
from checkout_node.outbox import Outbox
from checkout_node.vision.pipeline import FrameResult

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format generate_latest writes
DETECTOR_BUCKETS = (0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256)
EMBEDDER_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64)


@dataclass
class CameraState:
    """What the camera reader knows; a replay or evaluation has no camera reader: frames come,
    none are dropped, nothing reconnects."""

    connected: Callable[[], bool] = lambda: True
    dropped: Callable[[], int] = lambda: 0
    reconnects: Callable[[], int] = lambda: 0


class LaneMetrics:
    def __init__(
        self,
        lane: Lane,
        outbox: Outbox,
        camera: CameraState | None = None,
        fps: Callable[[], float] | None = None,
        frame_sender: FrameSender | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.detector_seconds = Histogram(
            "laneguard_lane_detector_seconds",
            "Detector session.run per detected frame",
            buckets=DETECTOR_BUCKETS,
            registry=self.registry,
        )
        self.frame_seconds = Histogram(
            "laneguard_lane_frame_seconds",
            "Pipeline time per frame, detector included",
            buckets=DETECTOR_BUCKETS,
            registry=self.registry,
        )
        self.embedder_seconds = Histogram(
            "laneguard_lane_embedder_seconds",
            "Identifying one counted item: embedding its kept crops and the gallery look-up",
            buckets=EMBEDDER_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LaneState(lane, outbox, camera or CameraState(), fps, frame_sender))
        lane.frame_observers.append(self.observe_frame)

    def observe_frame(self, result: FrameResult) -> None:
        self.frame_seconds.observe(result.seconds)
        if result.detector_seconds:
            self.detector_seconds.observe(result.detector_seconds)
        for item in result.counted:
            self.embedder_seconds.observe(item.identify_seconds)

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)


class _LaneState(Collector):
    """Read at scrape time from the lane, its outbox and its camera."""

    def __init__(
        self,
        lane: Lane,
        outbox: Outbox,
        camera: CameraState,
        fps: Callable[[], float] | None,
        frame_sender: FrameSender | None = None,
    ) -> None:
        self.lane, self.outbox, self.camera, self.fps = lane, outbox, camera, fps
        self.frame_sender = frame_sender

    def collect(self) -> Iterator[Any]:
        lane, counters = self.lane, self.lane.counters
        labels = ["lane"]
        here = [lane.lane_id]

        def counter(name: str, text: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(name, text, labels=labels)
            family.add_metric(here, value)
            return family

        def gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, text, labels=labels)
            family.add_metric(here, value)
            return family

        yield counter("laneguard_lane_frames", "Frames the pipeline processed", counters.frames)
        yield counter(
            "laneguard_lane_frames_dropped",
            "Frames the camera produced that the lane never processed (it was busy)",
            self.camera.dropped(),
        )
        yield counter(
            "laneguard_lane_frame_errors", "Frames that failed in the pipeline", counters.errors
        )
        if self.fps is not None:
            yield gauge(
                "laneguard_lane_frames_per_second", "Frames/s over the last interval", self.fps()
            )
        yield gauge("laneguard_lane_tracks", "Objects tracked in the last frame", counters.tracks)
        yield counter(
            "laneguard_lane_items_counted", "Items that reached the bagging area", counters.items
        )
        alerts = CounterMetricFamily(
            "laneguard_lane_alerts", "Alerts raised, by type", labels=[*labels, "type"]
        )
        for kind, count in sorted(counters.alerts_by_type.items()):
            alerts.add_metric([*here, kind], count)
        yield alerts
        yield counter("laneguard_lane_transactions", "Transactions finished", counters.transactions)
        yield counter(
            "laneguard_lane_pick_lists",
            "Produce pick lists the till asked for",
            counters.pick_lists,
        )
        yield counter("laneguard_lane_picks", "Pick-list PLUs the cashier tapped", counters.picks)
        depth = GaugeMetricFamily(
            "laneguard_lane_outbox_depth",
            "Messages waiting for the store server, by kind",
            labels=[*labels, "kind"],
        )
        for kind, count in sorted(self.outbox.depth().items()):
            depth.add_metric([*here, kind], count)
        yield depth
        yield gauge(
            "laneguard_lane_outbox_oldest_age_seconds",
            "Age of the oldest message waiting (0 when none)",
            self.outbox.oldest_age_s(),
        )
        yield gauge("laneguard_lane_outbox_bytes", "Outbox size on disk", self.outbox.size_bytes)
        yield gauge(
            "laneguard_lane_camera_up",
            "1 while the camera delivers frames",
            self.camera.connected(),
        )
        yield counter(
            "laneguard_lane_camera_reconnects", "Camera reconnections", self.camera.reconnects()
        )
        if lane.clips is not None:
            clips = lane.clips.stats
            yield counter("laneguard_lane_clips_made", "Alert clips made", clips.made)
            yield counter(
                "laneguard_lane_clips_dropped",
                "Alerts left without a clip (encoder behind, or no frames)",
                clips.dropped + clips.failed,
            )
            yield gauge(
                "laneguard_lane_clip_ring_bytes",
                "Memory the clip frame ring holds",
                lane.clips.ring.bytes,
            )
        yield from _frame_metrics(lane, self.frame_sender, counter)
        bundle = InfoMetricFamily(
            "laneguard_lane_bundle", "The model bundle and gallery the lane runs", labels=labels
        )
        bundle.add_metric(here, {"version": lane.model_version, "gallery": lane.gallery_version})
        yield bundle


def _frame_metrics(
    lane: Lane,
    sender: FrameSender | None,
    counter: Callable[[str, str, float], CounterMetricFamily],
) -> Iterator[CounterMetricFamily]:
    """Detection frames: kept for the store, refused by the day's quota, lost on the way."""
    if lane.frames is None:
        return
    yield counter(
        "laneguard_lane_detection_frames_kept",
        "Camera frames kept for the detector to learn this store's camera",
        lane.frames.stats.kept,
    )
    yield counter(
        "laneguard_lane_detection_frames_over_quota",
        "Frames chosen but not sent: the lane's daily quota was spent",
        lane.frames.stats.over_quota,
    )
    if sender is not None:
        yield counter(
            "laneguard_lane_detection_frames_lost",
            "Frames the encoder could not take (queue full) or encode",
            sender.stats.dropped + sender.stats.failed,
        )
