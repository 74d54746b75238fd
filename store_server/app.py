"""The store server application: one FastAPI app with the API routers and the console pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from product_db.db import create_tables, make_engine
from store_server import models  # noqa: F401  (registers the store tables)
from store_server.api import catalog as catalog_api
from store_server.api import ingest as ingest_api
from store_server.console import pages
from store_server.media import MediaStore
from store_server.settings import StoreSettings


def create_app(settings: StoreSettings | None = None) -> FastAPI:
    """Build the app for ``settings``; tables are created on start-up if missing."""
    settings = settings or StoreSettings()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        create_tables(engine)
        yield
        engine.dispose()

    app = FastAPI(title="LaneGuard store server", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.engine = engine
    app.state.media = MediaStore(settings.data_dir / "media")
    app.include_router(catalog_api.router)
    app.include_router(ingest_api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
