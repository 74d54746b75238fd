"""Real uvicorn servers for tests (the product's own helper, re-exported under test names)."""

from __future__ import annotations

from laneguard.serving import free_port
from laneguard.serving import serve_in_thread as serve

__all__ = ["free_port", "serve"]
