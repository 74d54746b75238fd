"""The produce pick lists the lane screen shows and has not had an answer to yet.

A tap on the screen makes the till key a PLU, so the screen may only choose among what it was
offered: a list is kept under its request (the till's ``plu_request`` event id) until one of its
PLUs is taken, and a tap naming another PLU or an unknown request is refused. Only the newest
``MAX_OPEN`` lists are kept: a till that asks again gets a fresh list and the stale ones lapse.
"""

from __future__ import annotations

from product_db.errors import LaneGuardError

MAX_OPEN = 8


class PickListError(LaneGuardError, LookupError):
    """A tap for a pick list that is not open, or for a PLU it did not offer."""


class OpenPickLists:
    """Request id -> the PLUs offered under it (the caller holds the lane's lock)."""

    def __init__(self, max_open: int = MAX_OPEN) -> None:
        self._open: dict[str, tuple[str, ...]] = {}
        self.max_open = max_open

    def offer(self, request_id: str, codes: tuple[str, ...]) -> None:
        self._open.pop(request_id, None)
        self._open[request_id] = codes
        for stale in list(self._open)[: -self.max_open]:
            del self._open[stale]

    def take(self, request_id: str, code: str) -> None:
        """Close the list ``request_id`` with ``code``; refused unless it offered ``code``."""
        offered = self._open.get(request_id)
        if offered is None:
            raise PickListError(f"no open pick list {request_id!r} on this lane")
        if code not in offered:
            raise PickListError(f"pick list {request_id!r} did not offer {code!r}")
        del self._open[request_id]
