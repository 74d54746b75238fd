"""What the lane's routes work with, in one typed container the application holds.

The routes are module-level functions (one router per resource), so they cannot capture the
lane in a closure; they ask for ``LaneServices`` through ``checkout_node.web.deps`` instead,
which reads it from the ``LaneApp`` that serves the request. One container behind one
dependency keeps every route's inputs visible in its signature and typed for mypy.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import FastAPI

from checkout_node.lane import Lane
from checkout_node.metrics import LaneMetrics
from checkout_node.web.access import LaneAccess
from checkout_node.web.hub import ScreenHub


@dataclass(frozen=True)
class LaneServices:
    """``live_clock``: till events are placed on the lane's clock when they arrive (a live
    lane); otherwise their own ``t`` is used (replaying a recording)."""

    lane: Lane
    hub: ScreenHub
    access: LaneAccess
    metrics: LaneMetrics
    live_clock: bool = True


class LaneApp(FastAPI):
    """The lane's FastAPI application, carrying its ``services`` as a typed attribute."""

    def __init__(self, services: LaneServices) -> None:
        self.services = services
        super().__init__(
            title=f"LaneGuard lane {services.lane.lane_id}", lifespan=self._screens_on_this_loop
        )

    @asynccontextmanager
    async def _screens_on_this_loop(self, _app: FastAPI) -> AsyncIterator[None]:
        """The hub hands events from the lane's threads to the loop serving the screens, so it
        learns that loop when the server starts and forgets it when the server stops."""
        self.services.hub.loop = asyncio.get_running_loop()
        yield
        self.services.hub.loop = None
