"""A background worker that runs when told there is work, at most every ``interval_s``.

The gallery learner and the teacher both wait for the ingest writer to say samples arrived,
then do their work off the request path; one failure is logged and the next poke tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("laneguard.server")


class PokedLoop:
    def __init__(
        self, name: str, work: Callable[[], object], interval_s: float = 2.0, first: bool = False
    ) -> None:
        """``first``: run once at start (work that arrived while the server was down)."""
        self.name, self.work, self.interval_s, self.first = name, work, interval_s, first
        self._stop = threading.Event()
        self._poke = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start (again, after a stop: an app's lifespan may run more than once in tests)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        if self.first:
            self._poke.set()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """There is new work."""
        self._poke.set()

    def stop(self) -> None:
        self._stop.set()
        self._poke.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._poke.wait()
            if self._stop.is_set():
                return
            self._poke.clear()
            try:
                self.work()
            except Exception:  # one bad crop or model must not stop the next round
                log.exception("%s failed", self.name)
            self._stop.wait(self.interval_s)
