"""The loop of a lane thread that asks the store server something every few seconds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("laneguard.node")


def poll_until_stopped(
    stop: threading.Event,
    poll_once: Callable[[], object],
    every_s: float,
    expected: tuple[type[Exception], ...],
    what: str,
) -> None:
    """Call ``poll_once`` every ``every_s`` until ``stop`` is set. The failures ``expected``
    of a store server that is away or answers badly are logged and tried again next time."""
    while not stop.is_set():
        try:
            outcome = poll_once()
            log.debug("%s: %s", what, outcome)
        except expected as error:
            log.warning("%s failed: %s", what, error)
        stop.wait(every_s)
