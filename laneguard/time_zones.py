"""The time zone a store's people read times in: its consoles' clocks, days and hour charts.

Records are kept in UTC; only what a person reads is shown in the store's zone."""

from __future__ import annotations

import contextlib
import os
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from product_db.errors import LaneGuardError


class UnknownTimeZoneError(LaneGuardError, ValueError):
    """A time zone name that is not in the IANA database."""


def _local_zone() -> tzinfo:
    """This computer's zone with its daylight-saving rules (/etc/localtime), or, where there is
    no such file, its current fixed offset."""
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:  # a link into the zone database names the zone
        with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(target.split("/zoneinfo/", 1)[1])
    try:
        with open("/etc/localtime", "rb") as rules:
            return ZoneInfo.from_file(rules, key="localtime")
    except (OSError, ValueError):
        local = datetime.now().astimezone().tzinfo
        assert local is not None  # astimezone() always sets one
        return local


def zone_named(name: str | None) -> tzinfo:
    """The IANA zone ``name`` (e.g. Europe/Berlin), or this computer's own zone for None: a
    store server runs in the store, on the store's clock."""
    if not name:
        return _local_zone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZoneError(
            f"time zone {name!r} is not an IANA time zone name (e.g. Europe/Berlin, "
            "America/New_York, UTC)"
        ) from None
