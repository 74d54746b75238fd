"""Fan-out of lane events to the screens connected over websockets.

The lane publishes from any thread (camera loop, web handlers, scanner readers); the hub hands
each event to the web server's event loop, which puts it on every connected screen's queue. A
screen too slow to keep up is told to resynchronise instead of holding the lane back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

QUEUE_LIMIT = 500


class ScreenHub:
    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.queues: set[asyncio.Queue[str]] = set()

    def publish(self, event: dict[str, Any]) -> None:
        """Thread-safe: queue ``event`` for every connected screen."""
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        data = json.dumps({**event, "sent_at": time.time()})
        with contextlib.suppress(RuntimeError):  # the loop stopped since the check
            loop.call_soon_threadsafe(self._fan_out, data)

    def _fan_out(self, data: str) -> None:
        for queue in list(self.queues):
            if queue.qsize() >= QUEUE_LIMIT:
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(json.dumps({"type": "resync"}))
            queue.put_nowait(data)

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self.queues.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self.queues.discard(queue)
