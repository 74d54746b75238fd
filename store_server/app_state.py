"""What the pieces the store's console shares with HQ's (sign-in pages, page rendering, the
signed-in user, the engine and settings dependencies) read off whichever app serves them.

The store's app is a ``StoreApp`` that carries its services as one typed container
(store_server.services); HQ's app keeps ``engine``, ``settings``, ``home`` and ``templates`` on
``app.state``. Both answer to the same names, so the shared code asks here instead of reaching
into either. This module imports nothing of the store's services: store_server.auth and
store_server.lanes build on it, and the services build on them.
"""

from __future__ import annotations

from datetime import timezone, tzinfo
from typing import Any, Protocol, cast

from sqlalchemy.engine import Engine
from starlette.requests import HTTPConnection

from laneguard.time_zones import zone_named
from store_server.settings import StoreSettings

STORE_HOME = "/alerts"


class ConsoleServices(Protocol):
    """The names every LaneGuard console app answers to."""

    @property
    def engine(self) -> Engine: ...

    @property
    def settings(self) -> StoreSettings: ...  # or HQ's settings, which has the names used


def console_services(connection: HTTPConnection) -> ConsoleServices:
    """The store app's service container, or HQ's ``app.state`` (the same names)."""
    app = connection.app
    return cast(ConsoleServices, getattr(app, "services", None) or app.state)


async def get_engine(connection: HTTPConnection) -> Engine:
    return console_services(connection).engine


async def get_settings(connection: HTTPConnection) -> StoreSettings:
    return console_services(connection).settings


async def get_home(connection: HTTPConnection) -> str:
    """Where a signed-in person lands: the store's alerts, HQ's stores."""
    return str(getattr(connection.app.state, "home", STORE_HOME))


def templates_for(connection: HTTPConnection, default: Any) -> Any:
    """HQ renders the shared pages (sign-in) with its own templates in front of the store's."""
    return getattr(connection.app.state, "templates", default)


def time_zone_of(connection: HTTPConnection) -> tzinfo:
    """The zone this console's people read times in: the store's (its setting, else this
    computer's). HQ's console, whose chain may span zones, reads UTC."""
    settings = console_services(connection).settings
    if not hasattr(settings, "time_zone"):
        return timezone.utc
    return zone_named(settings.time_zone)


async def get_time_zone(connection: HTTPConnection) -> tzinfo:
    return time_zone_of(connection)
