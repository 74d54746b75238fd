"""The store server's Prometheus metrics, served at ``/metrics``.

Ingest counts and latencies are observed as requests are answered (a counter and a histogram
per request: microseconds). Alert fan-out is timed from the moment ingest stored an alert to
the moment a console's websocket sends it. Lanes, websockets, learning and rollouts are read
when Prometheus scrapes: from the database (one small query per table) and the live feed, so
the figures are the ones the console shows.

Who may scrape: ``Authorization: Bearer`` one of ``metrics_tokens`` from the settings; with
none configured, this computer only (a Prometheus or node exporter on the server itself).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from product_db.models import utcnow
from store_server.lanes import lane_state
from store_server.live import PUBLISHED_AT, AlertFeed
from store_server.models import (
    BundleRelease,
    DetectionFrame,
    GalleryEntry,
    LaneHealth,
    Rollout,
    SampleRecord,
)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # the text format generate_latest writes
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class StoreMetrics:
    def __init__(self, engine: Engine, feed: AlertFeed) -> None:
        self.registry = CollectorRegistry()
        self.ingest_messages = Counter(
            "laneguard_store_ingest_messages",
            "Messages lanes delivered, by kind and what became of them",
            ["kind", "status"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            "laneguard_store_ingest_seconds",
            "Ingest request time, body read to answer, by the kinds of message it carried",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.fanout_seconds = Histogram(
            "laneguard_store_alert_fanout_seconds",
            "An alert stored by ingest to a console's websocket sending it",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StoreState(engine, feed))

    def watch_chain(self, state: Callable[[], dict[str, Any]]) -> None:
        """The link to the chain's HQ, when the store enrolled with one."""
        self.registry.register(_ChainState(state))

    def ingested(self, kinds: dict[str, dict[str, int]], seconds: float) -> None:
        """One ingest request: message counts by kind and status, and how long it took."""
        for kind, statuses in kinds.items():
            for status, count in statuses.items():
                self.ingest_messages.labels(kind, status).inc(count)
            self.ingest_seconds.labels(kind).observe(seconds)

    def sent_to_console(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event without its publish stamp, the fan-out time observed."""
        stamp = event.get(PUBLISHED_AT)
        if stamp is None:
            return event
        self.fanout_seconds.observe(max(0.0, time.monotonic() - float(stamp)))
        return {k: v for k, v in event.items() if k != PUBLISHED_AT}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoreState(Collector):
    def __init__(self, engine: Engine, feed: AlertFeed) -> None:
        self.engine, self.feed = engine, feed

    def collect(self) -> Iterator[Any]:
        now = utcnow()
        with Session(self.engine) as session:
            beats = list(session.exec(select(LaneHealth)))
            samples = session.exec(
                select(SampleRecord.review, func.count()).group_by(col(SampleRecord.review))
            ).all()
            frames = session.exec(
                select(DetectionFrame.review, func.count()).group_by(col(DetectionFrame.review))
            ).all()
            entries = session.exec(
                select(GalleryEntry.withdrawn, func.count())
                .where(col(GalleryEntry.withdraws).is_(None))
                .group_by(col(GalleryEntry.withdrawn))
            ).all()
            rollouts = session.exec(
                select(Rollout, BundleRelease.version)
                .join(BundleRelease, col(Rollout.release_id) == col(BundleRelease.id))
                .where(col(Rollout.state).in_(("running", "paused")))
            ).all()
        online = [b for b in beats if lane_state(b, now) != "offline"]
        yield _gauge(
            "laneguard_store_lanes_online", "Lanes whose heartbeat is current", len(online)
        )
        yield _gauge("laneguard_store_lanes_known", "Lanes that ever sent a heartbeat", len(beats))
        camera = GaugeMetricFamily(
            "laneguard_store_lane_camera_up", "Camera up per online lane", labels=["lane"]
        )
        for beat in online:
            camera.add_metric([beat.lane_id], float(beat.camera == "up"))
        yield camera
        yield _gauge(
            "laneguard_store_console_websockets",
            "Consoles on the live alert feed",
            self.feed.subscribers,
        )
        by_review = GaugeMetricFamily(
            "laneguard_store_samples", "Training samples by review state", labels=["review"]
        )
        for review, count in samples:
            by_review.add_metric([str(review)], float(count))
        yield by_review
        frames_by_review = GaugeMetricFamily(
            "laneguard_store_detection_frames",
            "Detection frames kept for the detector to learn from, by review state",
            labels=["review"],
        )
        for review, count in frames:
            frames_by_review.add_metric([str(review)], float(count))
        yield frames_by_review
        gallery = GaugeMetricFamily(
            "laneguard_store_gallery_entries",
            "Gallery entries learned in the store, in use or withdrawn after review",
            labels=["state"],
        )
        for withdrawn, count in entries:
            gallery.add_metric(["withdrawn" if withdrawn else "in_use"], float(count))
        yield gallery
        stage = GaugeMetricFamily(
            "laneguard_store_rollout_stage",
            "Stage index of each running or paused rollout (0: the canary stage)",
            labels=["rollout", "version", "state"],
        )
        for rollout, version in rollouts:
            stage.add_metric([str(rollout.id), version, rollout.state], float(rollout.stage))
        yield stage


class _ChainState(Collector):
    def __init__(self, state: Callable[[], dict[str, Any]]) -> None:
        self.state = state

    def collect(self) -> Iterator[Any]:
        state = self.state()
        yield _gauge(
            "laneguard_store_hq_connected",
            "1 while the link to HQ's broker is up",
            float(state["connected"]),
        )
        yield _gauge(
            "laneguard_store_hq_backlog",
            "Samples and gallery entries HQ has not acknowledged yet",
            state["backlog"],
        )
        messages = GaugeMetricFamily(
            "laneguard_store_hq_messages",
            "Messages since start: published to HQ, applied from HQ, refused from HQ",
            labels=["direction"],
        )
        for direction, key in (
            ("sent", "published"),
            ("applied", "received"),
            ("refused", "refused"),
        ):
            messages.add_metric([direction], float(state[key]))
        yield messages


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=float(value))
