"""Small state files that must survive a power cut whole: never half-written, never lost."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_json_atomic(path: Path, body: Any, mode: int = 0o644) -> Path:
    """Write ``body`` as JSON to a temporary file beside ``path`` (created with ``mode``),
    sync it, rename it over ``path`` and sync the folder: a reader sees the old file or the
    new one, even after the power goes at any moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(body, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    sync_dir(path.parent)
    return path


def sync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
