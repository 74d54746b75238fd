"""The store server in a background thread, served as `laneguard server run` serves it
(HTTPS with its certificate unless its tls setting is off): for the demo, the benchmarks that
run a whole store in one process, and tests that talk to a real server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from laneguard.serving import serve_in_thread
from store_server.app import create_app
from store_server.settings import StoreSettings
from store_server.transport import tls_files


@contextmanager
def serve_store(
    settings: StoreSettings, host: str = "127.0.0.1", port: int | None = None, app: Any = None
) -> Iterator[str]:
    """Serve ``app`` (default: a new one for ``settings``) until the block ends; yields the
    base URL lanes use (https:// when TLS is on)."""
    served = app if app is not None else create_app(settings)
    with serve_in_thread(served, host, port, tls=tls_files(settings)) as url:
        yield url
