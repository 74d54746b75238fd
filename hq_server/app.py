"""HQ's application: the store API (enrolment, release files), the console, and beside them
the JetStream link (stores' messages in, HQ's outbox out) and the rollout waves' loop."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine
from sqlmodel import Session

from hq_server import api
from hq_server.broker import BrokerKeeper
from hq_server.console import PAGES
from hq_server.db import migrate
from hq_server.intake import Intake
from hq_server.outbox import HqOutbox
from hq_server.releases import evaluate_waves
from hq_server.retention import purge
from hq_server.settings import HqSettings
from laneguard.body_limit import BodyLimit
from laneguard.chain import STORES_STREAM, store_subject
from laneguard.jetstream import Consumer, JetStreamLink, broker_tls
from laneguard.nats_auth import BrokerKeys
from laneguard.security_headers import SecurityHeaders
from laneguard.signing import load_or_make_key
from product_db.db import make_engine
from store_server.app import keep_private
from store_server.auth import AuditClientMiddleware, AuthError
from store_server.background import PeriodicLoop
from store_server.console import session as session_pages
from store_server.console.templating import STATIC_DIR, make_templates, render
from store_server.media import MediaStore

log = logging.getLogger("laneguard.hq")
TEMPLATES = Path(__file__).parent / "console" / "templates"


def hq_signing_key(settings: HqSettings) -> Ed25519PrivateKey:
    """HQ's key for messages to stores and release bundles: configured, or made once."""
    return load_or_make_key(settings.signing_key or settings.data_dir / "keys" / "hq.key")


def _waves(
    engine: Engine, outbox: HqOutbox, link: JetStreamLink, settings: HqSettings
) -> str | None:
    """One look at the chain's rollout; the link is woken when it ordered stores."""
    with Session(engine) as session:
        done = evaluate_waves(session, outbox, store_soak_s=settings.store_soak_s)
        session.commit()
    if done:
        link.wake()
    return done


def create_app(settings: HqSettings | None = None) -> FastAPI:
    settings = settings or HqSettings()
    keep_private(settings.data_dir, settings.database_url)
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrate(engine)
        link.start()
        waves.start()
        retention.start()
        yield
        retention.stop()
        waves.stop()
        link.stop()
        engine.dispose()

    app = FastAPI(title="LaneGuard HQ", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.home = "/stores"
    app.state.templates = make_templates(TEMPLATES)
    app.state.hq_key = hq_signing_key(settings)
    app.state.media = MediaStore(settings.data_dir / "media")
    outbox = app.state.outbox = HqOutbox(engine, app.state.hq_key)
    intake = app.state.intake = Intake(
        engine, app.state.media, outbox, agree_similarity=settings.agree_similarity
    )
    broker = app.state.broker = BrokerKeys.load_or_make(settings.data_dir / "keys")
    broker_context = broker_tls(settings.nats_url, settings.nats_ca_file)
    link = app.state.link = JetStreamLink(
        settings.nats_url,
        "hq",
        outbox.pending,
        outbox.published,
        consumers=[
            Consumer(
                "hq-intake",
                STORES_STREAM,
                store_subject("*", "*"),
                intake.handle,
                batch_handler=intake.handle_batch,
            )
        ],
        user=broker.hq_user(load_or_make_key(settings.data_dir / "keys" / "nats-hq-user.key")),
        tls=broker_context,
        owns_streams=True,
        maintain=BrokerKeeper(
            engine,
            broker,
            load_or_make_key(settings.data_dir / "keys" / "nats-sys-user.key"),
            settings.nats_url,
            broker_context,
        ),
    )
    intake.on_gallery = link.wake  # a gallery entry goes straight back out to every store
    waves = app.state.waves = PeriodicLoop(
        "hq-waves", lambda: _waves(engine, outbox, link, settings), settings.wave_check_s
    )
    retention = app.state.retention = PeriodicLoop(
        "hq-retention",
        lambda: purge(engine, app.state.media, settings.pooled_days),
        every_s=3600.0,
        first_s=300.0,
    )
    app.include_router(api.router)
    app.include_router(session_pages.router)
    for page in PAGES:
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AuditClientMiddleware)
    app.add_middleware(BodyLimit, default_bytes=settings.max_body_kb << 10, caps=[])

    @app.exception_handler(AuthError)
    def not_signed_in(request: Request, error: AuthError) -> Response:
        if error.status == 401 and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
        return render(request, "forbidden.html", None, error.status, message=str(error))

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, object]:
        return {"status": "ok", "broker": "up" if link.stats.connected else "down"}

    return app
