"""The store server application: one FastAPI app with the API routers and the console pages."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine, make_url

from laneguard.bearer import bearer_allowed
from laneguard.body_limit import BodyLimit
from laneguard.bundle import SHIPPED_BUNDLE, SHIPPED_TEACHER
from laneguard.discovery import DiscoveryResponder
from laneguard.files import private_dir, private_file
from laneguard.security_headers import SecurityHeaders
from product_db.db import make_engine
from store_server import models  # noqa: F401  (registers the store tables)
from store_server.api import bundles as bundles_api
from store_server.api import catalog as catalog_api
from store_server.api import gallery as gallery_api
from store_server.api import ingest as ingest_api
from store_server.api import lanes as lanes_api
from store_server.auth import AuditClientMiddleware, AuthError
from store_server.chain_link import chain_link
from store_server.console import PAGES
from store_server.console.templating import STATIC_DIR, render
from store_server.db import migrate
from store_server.events import (
    BrokerAddress,
    EventQueue,
    MqttPublisher,
    StateWatcher,
    StoreEvents,
    topic_part,
)
from store_server.ingest_store import IngestWriter
from store_server.lane_quota import LaneQuota
from store_server.learning import GalleryLearner, LearnConfig, LearningLoop, store_signing_key
from store_server.live import AlertFeed
from store_server.media import MediaStore
from store_server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from store_server.metrics import StoreMetrics
from store_server.retention import RetentionLoop
from store_server.rollouts import HealthLimits, RolloutLoop
from store_server.settings import StoreSettings
from store_server.teacher import StoreTeacher, TeacherLoop
from store_server.transport import certificate_binding

log = logging.getLogger("laneguard.server")


def _discovery(settings: StoreSettings, key: Ed25519PrivateKey) -> DiscoveryResponder | None:
    """Answer lanes looking for their store server (first boot), signed with the store's key;
    off when the port is 0."""
    if not settings.discovery_port:
        return None
    try:
        responder = DiscoveryResponder(
            settings.discovery_port,
            settings.host,
            settings.port,
            settings.store_name,
            key,
            settings.public_url,
            scheme="https" if settings.tls else "http",
        )
    except OSError as error:
        log.warning("lane discovery off: UDP port %d: %s", settings.discovery_port, error)
        return None
    responder.start()
    return responder


def keep_private(data_dir: Path, database_url: str) -> None:
    """The data folder (evidence, keys, bundles) and a SQLite database are the server's user's
    alone: they hold crops of customers' shopping and the server's signing key (the store's,
    and HQ's, which calls this too)."""
    private_dir(data_dir)
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        database.parent.mkdir(parents=True, exist_ok=True)
        private_file(database)


def _events(
    settings: StoreSettings, engine: Engine, feed: AlertFeed
) -> tuple[StoreEvents | None, list[MqttPublisher | StateWatcher]]:
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
    return events, [publisher, StateWatcher(engine, events)]


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


def create_app(settings: StoreSettings | None = None) -> FastAPI:
    """Build the app for ``settings``; the database is migrated to the newest schema on start."""
    settings = settings or StoreSettings()
    keep_private(settings.data_dir, settings.database_url)
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrate(engine)
        app.state.learning.start()
        app.state.learning.poke()  # samples that arrived while the server was down
        app.state.rollouts.start()
        app.state.retention.start()
        app.state.teacher.start()
        for service in event_services:
            service.start()
        if app.state.chain is not None:
            app.state.chain.start()
        responder = _discovery(settings, app.state.signing_key)
        yield
        if app.state.chain is not None:
            app.state.chain.stop()
        for service in reversed(event_services):
            service.stop()
        if responder is not None:
            responder.stop()
        app.state.teacher.stop()
        app.state.retention.stop()
        app.state.rollouts.stop()
        app.state.ingest_writer.close()
        app.state.learning.stop()
        engine.dispose()

    app = FastAPI(title="LaneGuard store server", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.media = MediaStore(settings.data_dir / "media")
    app.state.feed = AlertFeed()
    app.state.metrics = StoreMetrics(engine, app.state.feed)
    app.state.lane_quota = LaneQuota(
        {
            "transaction": settings.lane_transactions_per_minute,
            "sample": settings.lane_samples_per_minute,
        }
    )
    app.state.events, event_services = _events(settings, engine, app.state.feed)
    app.state.signing_key = store_signing_key(settings)
    app.state.tls_binding = certificate_binding(settings, app.state.signing_key)
    learner = GalleryLearner(
        engine,
        app.state.media,
        settings.bundle or SHIPPED_BUNDLE,
        LearnConfig(
            min_transactions=settings.learn_min_transactions,
            consistency=settings.learn_consistency,
        ),
    )
    app.state.learning = LearningLoop(learner)
    learner_poke = app.state.learning.poke
    app.state.rollouts = RolloutLoop(engine, HealthLimits(), every_s=settings.rollout_check_s)
    app.state.retention = RetentionLoop(
        engine,
        app.state.media,
        settings.retention_days,
        sample_days=settings.sample_retention_days,
    )
    app.state.teacher = TeacherLoop(_teacher(settings, engine, app.state.media, learner_poke))
    app.state.ingest_writer = IngestWriter(
        engine,
        app.state.media,
        app.state.feed,
        on_honest_samples=app.state.learning.poke,
        on_interest_samples=app.state.teacher.poke,
    )
    # The chain's HQ, once this store enrolled with one (`laneguard server hq-enrol`).
    app.state.chain = chain_link(settings, engine, app.state.media)
    if app.state.chain is not None:
        app.state.metrics.watch_chain(app.state.chain.state)
    app.include_router(catalog_api.router)
    app.include_router(lanes_api.router)
    app.include_router(ingest_api.router)
    app.include_router(gallery_api.router)
    app.include_router(bundles_api.router)
    for page in PAGES:
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AuditClientMiddleware)
    app.add_middleware(
        BodyLimit,
        default_bytes=settings.max_body_kb << 10,
        caps=[
            ("/api/v1/ingest", settings.max_ingest_mb << 20),
            ("/catalog/import", settings.max_upload_mb << 20),
        ],
    )

    @app.exception_handler(AuthError)
    def not_signed_in(request: Request, error: AuthError) -> Response:
        if error.status == 401 and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return render(request, "forbidden.html", None, error.status, message=str(error))

    @app.get("/metrics", tags=["monitoring"], response_class=Response)
    def prometheus(request: Request) -> Response:
        """Prometheus text format; a scraper with a metrics token (or this computer)."""
        host = request.client.host if request.client is not None else None
        if not bearer_allowed(tuple(settings.metrics_tokens), request.headers, host):
            return JSONResponse(
                {
                    "detail": "scraper not recognised: send 'Authorization: Bearer <metrics "
                    "token>' (metrics_tokens in the store server's settings)"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(app.state.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
