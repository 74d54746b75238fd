"""The time zone a store's people read times in: its consoles' clocks, days and hour charts.

Records are kept in UTC; only what a person reads is shown in the store's zone."""

from __future__ import annotations

from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from product_db.errors import LaneGuardError


class UnknownTimeZoneError(LaneGuardError, ValueError):
    """A time zone name that is not in the IANA database."""


def zone_named(name: str | None) -> tzinfo:
    """The IANA zone ``name`` (e.g. Europe/Berlin), or this computer's own zone for None: a
    store server runs in the store, on the store's clock."""
    if not name:
        local = datetime.now().astimezone().tzinfo
        assert local is not None  # astimezone() always sets one
        return local
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZoneError(
            f"time zone {name!r} is not an IANA time zone name (e.g. Europe/Berlin, "
            "America/New_York, UTC)"
        ) from None
