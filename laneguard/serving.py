"""Serving an ASGI app from a background thread (uvicorn), for the demo and evaluations that
run a store server and lanes in one process, and for tests that talk to a real server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from laneguard.slow_clients import HEADER_TIMEOUT_S, server_options
from product_db.errors import LaneGuardError


class ServerStartError(LaneGuardError, RuntimeError):
    """A server that did not start in time (its port taken, or its app failed at start-up)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_in_thread(
    app: Any,
    host: str = "127.0.0.1",
    port: int | None = None,
    timeout: float = 20.0,
    tls: tuple[Path, Path] | None = None,
    header_timeout_s: float = HEADER_TIMEOUT_S,
) -> Iterator[str]:
    """Serve ``app`` until the block ends (on ``port``, or a free one); yields its base URL.
    ``tls`` (certificate file, key file) serves HTTPS; slow clients are bounded as in
    production (laneguard.slow_clients)."""
    port = port or free_port()
    certificate, key = tls if tls else (None, None)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=str(certificate) if certificate else None,
        ssl_keyfile=str(key) if key else None,
        **server_options(header_timeout_s),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name=f"http:{port}")
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ServerStartError(f"the server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"{'https' if tls else 'http'}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
