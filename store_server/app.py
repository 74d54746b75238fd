"""The store server application: one FastAPI app with the API routers and the console pages,
running on the services store_server.services builds and starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.engine import make_url

from laneguard.bearer import bearer_allowed
from laneguard.body_limit import BodyLimit
from laneguard.files import private_dir, private_file
from laneguard.security_headers import SecurityHeaders
from store_server import models  # noqa: F401  (registers the store tables)
from store_server.api import bundles as bundles_api
from store_server.api import catalog as catalog_api
from store_server.api import gallery as gallery_api
from store_server.api import ingest as ingest_api
from store_server.api import lanes as lanes_api
from store_server.auth import AuditClientMiddleware
from store_server.console import PAGES
from store_server.console.errors import add_error_pages
from store_server.console.templating import STATIC_DIR
from store_server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from store_server.services import StoreApp, StoreServices, build_services
from store_server.settings import StoreSettings

API_ROUTERS = (
    catalog_api.router,
    lanes_api.router,
    ingest_api.router,
    gallery_api.router,
    bundles_api.router,
)


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


def create_app(settings: StoreSettings | None = None) -> FastAPI:
    """Build the app for ``settings``; its services start with the server (the database is
    migrated to the newest schema first) and stop with it, in reverse."""
    settings = settings or StoreSettings()
    keep_private(settings.data_dir, settings.database_url)
    services = build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        services.start()
        try:
            yield
        finally:
            services.stop()

    app = StoreApp(services, title="LaneGuard store server", version="0.1.0", lifespan=lifespan)
    for router in API_ROUTERS:
        app.include_router(router)
    for page in PAGES:
        app.include_router(page.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_middleware(app, settings)
    add_error_pages(app)
    _add_monitoring(app, services)
    return app


def _add_middleware(app: FastAPI, settings: StoreSettings) -> None:
    """The last added runs first: the body cap refuses an oversized body before anything
    else reads a byte of it."""
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


def _add_monitoring(app: FastAPI, services: StoreServices) -> None:
    @app.get("/metrics", tags=["monitoring"], response_class=Response)
    def prometheus(request: Request) -> Response:
        """Prometheus text format; a scraper with a metrics token (or this computer)."""
        host = request.client.host if request.client is not None else None
        if not bearer_allowed(tuple(services.settings.metrics_tokens), request.headers, host):
            return JSONResponse(
                {
                    "detail": "scraper not recognised: send 'Authorization: Bearer <metrics "
                    "token>' (metrics_tokens in the store server's settings)"
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return Response(services.metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}
