"""The store server in a background thread, served as `laneguard server run` serves it
(HTTPS with its certificate unless its tls setting is off): for the demo, the benchmarks that
run a whole store in one process, and tests that talk to a real server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from laneguard.serving import serve_in_thread
from store_server.app import create_app
from store_server.settings import StoreSettings
from store_server.transport import tls_files


@contextmanager
def serve_store(
    settings: StoreSettings, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[str]:
    """Serve a new store server for ``settings`` until the block ends; yields the base URL
    lanes use (https:// when TLS is on)."""
    with serve_in_thread(create_app(settings), host, port, tls=tls_files(settings)) as url:
        yield url
