"""FastAPI dependencies shared by the routers."""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.engine import Engine

from store_server.live import AlertFeed
from store_server.media import MediaStore
from store_server.settings import StoreSettings


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_settings(request: Request) -> StoreSettings:
    settings: StoreSettings = request.app.state.settings
    return settings


def get_media(request: Request) -> MediaStore:
    media: MediaStore = request.app.state.media
    return media


def get_feed(request: Request) -> AlertFeed:
    feed: AlertFeed = request.app.state.feed
    return feed
