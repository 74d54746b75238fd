"""What the store server's routes and background work run on, in one typed container the
application holds, and the one ordered list that starts and stops it.

The routes are module-level functions (one router per resource), so they cannot capture the
services in a closure; they ask for them through store_server.deps, which reads them from the
``StoreApp`` serving the request. ``StoreServices.stages`` lists what has to be started with
the server, each after what it feeds: the lifespan walks the list forwards to start and
backwards to stop, so whatever produces work (the ingest writer, the chain link) stops while
what it hands work to (the learner, the teachers, the MQTT publisher) still runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy.engine import Engine

from laneguard.bundle import SHIPPED_BUNDLE, SHIPPED_TEACHER
from laneguard.discovery import DiscoveryResponder
from product_db.db import make_engine
from store_server.chain_link import ChainLink, chain_link
from store_server.db import migrate
from store_server.events import (
    BrokerAddress,
    EventQueue,
    MqttPublisher,
    StateWatcher,
    StoreEvents,
    topic_part,
)
from store_server.frame_teacher import FrameTeacher, FrameTeacherLoop, Thresholds
from store_server.ingest_store import IngestWriter
from store_server.lane_quota import LaneQuota
from store_server.learning import GalleryLearner, LearnConfig, LearningLoop, store_signing_key
from store_server.live import AlertFeed
from store_server.media import MediaStore
from store_server.metrics import StoreMetrics
from store_server.retention import RetentionLoop
from store_server.rollouts import HealthLimits, RolloutLoop
from store_server.settings import StoreSettings
from store_server.teacher import StoreTeacher, TeacherLoop
from store_server.transport import certificate_binding

log = logging.getLogger("laneguard.server")


def _nothing() -> None:
    """A stage with nothing to do on one side (the ingest writer starts on first use)."""


@dataclass(frozen=True)
class Stage:
    """One thing started with the server and stopped with it."""

    name: str
    start: Callable[[], object]
    stop: Callable[[], object]


@dataclass(frozen=True)
class StoreServices:
    """Everything the routes use, typed; ``stages`` in the order they start."""

    settings: StoreSettings
    engine: Engine
    media: MediaStore
    feed: AlertFeed
    metrics: StoreMetrics
    lane_quota: LaneQuota
    signing_key: Ed25519PrivateKey
    # The store key's signature over the served certificate; None when serving plain HTTP.
    tls_binding: dict[str, object] | None
    events: StoreEvents | None  # None: no MQTT broker configured
    learning: LearningLoop
    teacher: TeacherLoop
    frame_teacher: FrameTeacherLoop
    ingest_writer: IngestWriter
    rollouts: RolloutLoop
    retention: RetentionLoop
    chain: ChainLink | None  # the chain's HQ, once this store enrolled with one
    stages: tuple[Stage, ...]

    def start(self) -> None:
        """Start every stage in order. When one fails, those already started are stopped
        (newest first) before the error goes on: a failed start leaves no thread behind."""
        for started, stage in enumerate(self.stages):
            try:
                stage.start()
            except BaseException:
                _stop_all(self.stages[:started])
                raise

    def stop(self) -> None:
        _stop_all(self.stages)


def _stop_all(stages: tuple[Stage, ...]) -> None:
    """Every stage stopped, last started first; one that fails to stop is logged and the rest
    still stop (the ingest writer drains, the engine is disposed)."""
    for stage in reversed(stages):
        try:
            stage.stop()
        except Exception:
            log.exception("stopping %s failed", stage.name)


class StoreApp(FastAPI):
    """The store server's FastAPI application, carrying its ``services`` as a typed
    attribute (store_server.deps hands them to the routes)."""

    def __init__(self, services: StoreServices, **kwargs: Any) -> None:
        self.services = services
        super().__init__(**kwargs)


class Discovery:
    """Answers lanes looking for their store server (first boot), signed with the store's
    key; off when the port is 0. The UDP port is bound on start, not when the app is built."""

    def __init__(self, settings: StoreSettings, key: Ed25519PrivateKey) -> None:
        self.settings, self.key = settings, key
        self.responder: DiscoveryResponder | None = None

    def start(self) -> None:
        settings = self.settings
        if not settings.discovery_port:
            return
        try:
            self.responder = DiscoveryResponder(
                settings.discovery_port,
                settings.host,
                settings.port,
                settings.store_name,
                self.key,
                settings.public_url,
                scheme="https" if settings.tls else "http",
            )
        except OSError as error:
            log.warning("lane discovery off: UDP port %d: %s", settings.discovery_port, error)
            return
        self.responder.start()

    def stop(self) -> None:
        if self.responder is not None:
            self.responder.stop()
            self.responder = None


def _events(
    settings: StoreSettings, engine: Engine, feed: AlertFeed
) -> tuple[StoreEvents | None, list[Stage]]:
    """The MQTT events and the threads behind them, when a broker is configured."""
    if settings.mqtt_url is None:
        return None, []
    address = BrokerAddress.parse(settings.mqtt_url)
    store = settings.mqtt_store or settings.store_name
    queue = EventQueue(settings.data_dir / "events.sqlite3")
    publisher = MqttPublisher(
        queue,
        address,
        client_id=f"laneguard-store-{topic_part(store)}",
        username=settings.mqtt_username,
        password=settings.mqtt_password,
        ca_file=settings.mqtt_ca_file,
    )
    events = StoreEvents(store, queue, on_queued=publisher.wake)
    feed.sinks.append(events.alert)
    watcher = StateWatcher(engine, events)
    return events, [
        Stage("mqtt publisher", publisher.start, publisher.stop),
        Stage("state watcher", watcher.start, watcher.stop),
    ]


def _teacher(
    settings: StoreSettings, engine: Engine, media: MediaStore, on_labelled: Callable[[], None]
) -> StoreTeacher | None:
    """The teacher (T3) when it is on and its bundle is there; the model loads on first use."""
    bundle = settings.teacher_bundle or SHIPPED_TEACHER
    if not settings.teacher:
        return None
    if not bundle.is_file():
        log.warning('no teacher bundle at %s: "of interest" crops wait for a manager', bundle)
        return None
    return StoreTeacher(engine, media, bundle, on_labelled=on_labelled)


def _frame_teacher(settings: StoreSettings, engine: Engine, media: MediaStore) -> FrameTeacher:
    """The frame teacher: the production bundle's largest detector, which it finds (and
    loads) when the first "of interest" frame needs it; when it is off, the same loop hands
    those frames to a person undecided."""
    return FrameTeacher(
        engine,
        media,
        settings.data_dir,
        settings.bundle or SHIPPED_BUNDLE,
        Thresholds(settings.frame_teacher_t3, settings.frame_teacher_reject),
        use_detector=settings.frame_teacher,
    )


def _learning(settings: StoreSettings, engine: Engine, media: MediaStore) -> LearningLoop:
    learner = GalleryLearner(
        engine,
        media,
        settings.bundle or SHIPPED_BUNDLE,
        LearnConfig(
            min_transactions=settings.learn_min_transactions,
            consistency=settings.learn_consistency,
        ),
    )
    return LearningLoop(learner)


def build_services(settings: StoreSettings) -> StoreServices:
    """The store's services for ``settings``, built but not started (nothing runs until the
    app's lifespan calls ``start``)."""
    engine = make_engine(settings.database_url)
    media = MediaStore(settings.data_dir / "media")
    feed = AlertFeed()
    metrics = StoreMetrics(engine, feed)
    signing_key = store_signing_key(settings)
    events, event_stages = _events(settings, engine, feed)
    learning = _learning(settings, engine, media)
    teacher = TeacherLoop(_teacher(settings, engine, media, learning.poke))
    frame_teacher = FrameTeacherLoop(_frame_teacher(settings, engine, media))
    writer = IngestWriter(
        engine,
        media,
        feed,
        on_honest_samples=learning.poke,
        on_interest_samples=teacher.poke,
        on_interest_frames=frame_teacher.poke,
    )
    rollouts = RolloutLoop(engine, HealthLimits(), every_s=settings.rollout_check_s)
    retention = RetentionLoop(
        engine,
        media,
        settings.retention_days,
        sample_days=settings.sample_retention_days,
        frame_days=settings.frame_retention_days,
    )
    chain = chain_link(settings, engine, media)
    if chain is not None:
        metrics.watch_chain(chain.state)
    discovery = Discovery(settings, signing_key)

    def learn_from_the_backlog() -> None:
        learning.start()
        learning.poke()  # samples that arrived while the server was down

    stages = (
        Stage("database", lambda: migrate(engine), engine.dispose),
        Stage("gallery learner", learn_from_the_backlog, learning.stop),
        Stage("teacher", teacher.start, teacher.stop),
        Stage("frame teacher", frame_teacher.start, frame_teacher.stop),
        *event_stages,
        Stage("ingest writer", _nothing, writer.close),
        Stage("rollouts", rollouts.start, rollouts.stop),
        Stage("retention", retention.start, retention.stop),
        *([Stage("chain link", chain.start, chain.stop)] if chain is not None else []),
        Stage("lane discovery", discovery.start, discovery.stop),
    )
    return StoreServices(
        settings=settings,
        engine=engine,
        media=media,
        feed=feed,
        metrics=metrics,
        lane_quota=LaneQuota(
            {
                "transaction": settings.lane_transactions_per_minute,
                "sample": settings.lane_samples_per_minute,
                "frame": settings.lane_frames_per_minute,
            }
        ),
        signing_key=signing_key,
        tls_binding=certificate_binding(settings, signing_key),
        events=events,
        learning=learning,
        teacher=teacher,
        frame_teacher=frame_teacher,
        ingest_writer=writer,
        rollouts=rollouts,
        retention=retention,
        chain=chain,
        stages=stages,
    )
