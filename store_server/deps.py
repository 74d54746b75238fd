"""FastAPI dependencies shared by the routers. They are ``async`` because they only read
app.state: a plain ``def`` dependency costs a hop to the thread pool on every request."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.engine import Engine

from store_server.ingest_store import IngestWriter
from store_server.live import AlertFeed
from store_server.media import MediaStore
from store_server.settings import StoreSettings


async def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def get_settings(request: Request) -> StoreSettings:
    settings: StoreSettings = request.app.state.settings
    return settings


async def get_media(request: Request) -> MediaStore:
    media: MediaStore = request.app.state.media
    return media


async def get_feed(request: Request) -> AlertFeed:
    feed: AlertFeed = request.app.state.feed
    return feed


async def get_ingest_writer(request: Request) -> IngestWriter:
    writer: IngestWriter = request.app.state.ingest_writer
    return writer
