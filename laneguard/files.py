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
    return write_bytes_atomic(path, json.dumps(body).encode(), mode)


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """``data`` to ``path``, whole or not at all (see ``write_json_atomic``), created with
    ``mode`` (0600 for keys) so it is never readable by others even for a moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(partial, mode)
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


def private_dir(folder: Path) -> Path:
    """``folder`` (made if missing) readable by this service's user alone (0700): where
    credentials, evidence and outboxes live."""
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    return folder


def private_file(path: Path) -> Path:
    """``path`` (created empty if missing) readable by this service's user alone (0600), with
    its SQLite companions (-wal, -shm) if they exist; SQLite gives new ones the same mode."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for candidate in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if candidate.exists():
            os.chmod(candidate, 0o600)
    return path
