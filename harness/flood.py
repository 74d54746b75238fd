"""Floods: a body far larger than any cap, streamed over a raw socket so the caller sees how
much the server took before it answered (the security probes and `bench body-limits`)."""

from __future__ import annotations

import select
import socket
from dataclasses import dataclass
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
