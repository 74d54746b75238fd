"""HQ's application: the store API (enrolment, release files), the console, and beside them
the JetStream link (stores' messages in, HQ's outbox out) and the rollout waves' loop."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from hq_server import api
from hq_server.console import PAGES
from hq_server.db import migrate
from hq_server.intake import Intake
from hq_server.outbox import HqOutbox
from hq_server.releases import evaluate_waves
from hq_server.settings import HqSettings
from laneguard.body_limit import BodyLimit
from laneguard.chain import STORES_STREAM, store_subject
from laneguard.files import private_dir, private_file
from laneguard.jetstream import Consumer, JetStreamLink
from laneguard.signing import load_private_key, new_keypair
from product_db.db import make_engine
from store_server.auth import AuditClientMiddleware, AuthError
from store_server.console import session as session_pages
from store_server.console.templating import STATIC_DIR, make_templates, render
from store_server.media import MediaStore

log = logging.getLogger("laneguard.hq")
TEMPLATES = Path(__file__).parent / "console" / "templates"


def hq_signing_key(settings: HqSettings) -> Ed25519PrivateKey:
    """HQ's key for messages to stores and release bundles: configured, or made once."""
    path = settings.signing_key or settings.data_dir / "keys" / "hq.key"
    if not path.exists():
        new_keypair(path.parent, path.stem)
    return load_private_key(path)


class WaveLoop:
    """Moves the chain's rollout on (or halts it) every ``every_s`` seconds."""

    def __init__(self, engine: Engine, outbox: HqOutbox, link: JetStreamLink, settings: HqSettings):
        self.engine, self.outbox, self.link, self.settings = engine, outbox, link, settings
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> str | None:
        with Session(self.engine) as session:
            done = evaluate_waves(session, self.outbox, store_soak_s=self.settings.store_soak_s)
            session.commit()
        if done:
            self.link.wake()
        return done

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.wave_check_s):
            try:
                self.run_once()
            except Exception:
                log.exception("rollout wave evaluation failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True, name="hq-waves")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _keep_private(settings: HqSettings) -> None:
    private_dir(settings.data_dir)
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database)
        database.parent.mkdir(parents=True, exist_ok=True)
        private_file(database)


def create_app(settings: HqSettings | None = None) -> FastAPI:
    settings = settings or HqSettings()
    _keep_private(settings)
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        migrate(engine)
        link.start()
        waves.start()
        yield
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
    intake = app.state.intake = Intake(engine, app.state.media, outbox)
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
    )
    intake.on_gallery = link.wake  # a gallery entry goes straight back out to every store
    waves = app.state.waves = WaveLoop(engine, outbox, link, settings)
    app.include_router(api.router)
    app.include_router(session_pages.router)
    for page in PAGES:
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
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
