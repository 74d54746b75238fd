"""The produce pick lists the lane screen shows and has not had an answer to yet.

A tap on the screen makes the till key a PLU, so the screen may only choose among what it was
offered: a list is kept under its request (the till's ``plu_request`` event id), with the way
back to the till that asked, until one of its PLUs is taken; a tap naming another PLU or an
unknown request is refused. Only the newest ``MAX_OPEN`` lists are kept (a till that asks again
gets a fresh list and the stale ones lapse), and every list closes with its transaction, so a
tap can never key one customer's produce into the next customer's sale.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from product_db.errors import LaneGuardError

MAX_OPEN = 8

# Hands a message to the till that asked; False when that till is no longer connected.
Reply = Callable[[dict[str, Any]], bool]


class PickListError(LaneGuardError, LookupError):
    """A pick list asked for without a way to answer, or a tap for a list that is not open,
    for a PLU it did not offer, or whose till has gone."""


@dataclass(frozen=True, slots=True)
class OpenList:
    request_id: str
    codes: tuple[str, ...]
    reply: Reply


class OpenPickLists:
    """Request id -> the list offered under it (the caller holds the lane's lock)."""

    def __init__(self, max_open: int = MAX_OPEN) -> None:
        self._open: dict[str, OpenList] = {}
        self.max_open = max_open

    def offer(self, offered: OpenList) -> list[str]:
        """Open ``offered``; returns the request ids that lapsed to make room."""
        self._open.pop(offered.request_id, None)
        self._open[offered.request_id] = offered
        lapsed = list(self._open)[: -self.max_open]
        for request_id in lapsed:
            del self._open[request_id]
        return lapsed

    def take(self, request_id: str, code: str) -> OpenList:
        """Close the list ``request_id`` with ``code``; refused unless it offered ``code``."""
        offered = self._open.get(request_id)
        if offered is None:
            raise PickListError(f"no open pick list {request_id!r} on this lane")
        if code not in offered.codes:
            raise PickListError(f"pick list {request_id!r} did not offer {code!r}")
        del self._open[request_id]
        return offered

    def close_all(self) -> list[str]:
        """Every open list closed (its transaction ended); their request ids."""
        closed = list(self._open)
        self._open.clear()
        return closed
