"""Limits on slow and idle HTTP clients, for every LaneGuard server (lane, store, HQ).

uvicorn closes a keep-alive connection left idle, but a client that opens a connection and
sends its request headers a byte at a time (slowloris) is never timed out: each one holds a
socket and a file descriptor until the process runs out of them. ``HeaderTimeoutProtocol``
closes a connection whose request headers are not complete ``header_timeout_s`` after it
opened or after its previous response; ``server_options`` gathers that with uvicorn's own
limits (keep-alive, concurrent connections, largest header block), and the systemd units set
``LimitNOFILE`` to match.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
KEEP_ALIVE_S = 5
MAX_CONNECTIONS = 1000  # under the units' LimitNOFILE (4096), with room for files and sockets
MAX_HEADER_BYTES = 16 * 1024


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers come too slowly."""

    header_timeout_s: float = HEADER_TIMEOUT_S

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._waiting_after: Any = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_deadline is not None and self.cycle is not self._waiting_after:
            self._header_deadline.cancel()  # a new request's headers are in
            self._header_deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def handle_websocket_upgrade(self, event: Any) -> None:
        self._disarm()
        super().handle_websocket_upgrade(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._disarm()
        self._waiting_after = self.cycle  # the request before the one awaited (None: first)
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
        self._header_deadline = None

    def _too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers were too slow")
            self.transport.close()


GRACEFUL_SHUTDOWN_S = 5.0


def server_options(header_timeout_s: float = HEADER_TIMEOUT_S) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that bound slow clients."""
    protocol = type(
        "HeaderTimeoutProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout_s": header_timeout_s},
    )
    return {
        "http": protocol,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "limit_concurrency": MAX_CONNECTIONS,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
        # A screen's websocket or a long download does not hold a stopping server (systemd's
        # stop, Ctrl-C) for ever: it gets this long to finish, then is closed.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }
