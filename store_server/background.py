"""Background workers: one that runs when told there is work, at most every ``interval_s``
(the gallery learner and the teacher wait for the ingest writer to say samples arrived), and
one that runs on a clock (evidence retention; HQ's waves and retention). One failure is logged
and the next round tries again.
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


class PeriodicLoop:
    """Runs ``work`` ``first_s`` after start (a server starting is busy enough), then every
    ``every_s``; keeps what the last run returned."""

    def __init__(
        self, name: str, work: Callable[[], object], every_s: float, first_s: float | None = None
    ) -> None:
        self.name, self.work, self.every_s = name, work, every_s
        self.first_s = every_s if first_s is None else first_s
        self.last: object = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        if self._stop.wait(self.first_s):
            return
        while not self._stop.is_set():
            try:
                self.last = self.work()
            except Exception:  # the next run tries again; the server goes on
                log.exception("%s failed", self.name)
            self._stop.wait(self.every_s)
