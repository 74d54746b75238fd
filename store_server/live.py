"""The live alert feed: what ingest stores, pushed to every open console within milliseconds.

Ingest runs in FastAPI's worker threads; each console's websocket waits on an asyncio queue in
the server's event loop. ``publish`` hands an event to every queue through the loop
(thread-safe), never blocking ingest: a console too slow to keep up loses its oldest events
and is told so (it reloads the list), rather than holding back the lanes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

log = logging.getLogger("laneguard.server.live")
QUEUE_SIZE = 1000
PUBLISHED_AT = "_published_monotonic"


class AlertFeed:
    def __init__(self) -> None:
        # Called with every event in the publishing thread (the store's MQTT events); an
        # error in one is logged and never reaches ingest.
        self.sinks: list[Callable[[dict[str, Any]], None]] = []
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[dict[str, Any]]]]
        self._subscribers = set()
        self._lock = threading.Lock()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        """From any thread: queue ``event`` for every subscriber, stamped with when (the
        console's sender times the fan-out from it and takes the stamp off)."""
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:
                log.exception("an event sink failed on %s", event.get("type"))
        event = {**event, PUBLISHED_AT: time.monotonic()}
        with self._lock:
            targets = list(self._subscribers)
        for loop, queue in targets:
            try:
                loop.call_soon_threadsafe(_offer, queue, event)
            except RuntimeError:  # that loop has closed; its subscriber is going away
                continue

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        entry = (asyncio.get_running_loop(), queue)
        with self._lock:
            self._subscribers.add(entry)
        try:
            yield queue
        finally:
            with self._lock:
                self._subscribers.discard(entry)


def _offer(queue: asyncio.Queue[dict[str, Any]], event: dict[str, Any]) -> None:
    if queue.full():
        while queue.qsize() > QUEUE_SIZE - 2:
            queue.get_nowait()
        queue.put_nowait({"type": "overflow"})
    queue.put_nowait(event)
