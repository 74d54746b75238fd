"""Floods: a body far larger than any cap, streamed over a raw socket so the caller sees how
much the server took before it answered, and the peak memory a process grew by meanwhile (the
security probes and `bench body-limits`)."""

from __future__ import annotations

import os
import select
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Flood:
    status: int | None  # the server's answer, if it gave one
    sent: int  # body bytes the server let through before answering or closing
    body: bytes


def flood(
    url: str,
    path: str,
    total: int,
    headers: dict[str, str] | None = None,
    chunk: int = 1 << 20,
    declare_length: bool = False,
) -> Flood:
    """POST ``total`` bytes of zeros to ``url + path``: chunked (no length) or, with
    ``declare_length``, under a Content-Length that says so. Stops sending as soon as the
    server answers or stops reading."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines.append(f"Content-Length: {total}" if declare_length else "Transfer-Encoding: chunked")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    block = b"0" * chunk
    sent = 0
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered
            if not select.select([], [sock], [], 2.0)[1]:
                break  # it stopped reading
            piece = block if declare_length else f"{len(block):x}\r\n".encode() + block + b"\r\n"
            try:
                sock.sendall(piece)
            except OSError:
                break
            sent += len(block)
        else:
            if not declare_length:
                sock.sendall(b"0\r\n\r\n")
        answer = b""
        try:
            while b"\r\n\r\n" not in answer:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/1.1 ") else None
    return Flood(status, sent, answer.partition(b"\r\n\r\n")[2])


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@dataclass
class MemoryGrowth:
    idle_mb: float
    peak_growth_mb: float = 0.0  # filled in when the measured block ends


@contextmanager
def memory_growth(pid: int | None = None) -> Iterator[MemoryGrowth]:
    """How far process ``pid``'s (default: this one's) resident memory peaked above where it
    stood when the block began; the kernel's high-water mark is reset first."""
    pid = pid or os.getpid()
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    idle = _status_kb(pid, "VmRSS")
    measured = MemoryGrowth(round(idle / 1024, 1))
    yield measured
    measured.peak_growth_mb = round((_status_kb(pid, "VmHWM") - idle) / 1024, 1)
