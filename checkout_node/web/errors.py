"""How the lane's web server says no.

The JSON API (till, screen scripts, monitoring) refuses with ``HTTPException``, which FastAPI
answers as ``{"detail": "..."}`` with the status; the helpers here build the refusals that
more than one route gives, so the same failure reads the same everywhere. A websocket is
refused before it is accepted with ``WebSocketException`` (close code 1008, which the server
answers as HTTP 403), and once accepted it answers a bad message on the socket itself. The
kiosk's sign-in pages answer in plain text or HTML, because a browser shows them to a person.
"""

from __future__ import annotations

from fastapi import HTTPException, WebSocketException
from pydantic import ValidationError

WS_POLICY_VIOLATION = 1008  # RFC 6455: the server refuses what the client is or sent


def problem(error: ValidationError) -> str:
    """The first thing wrong with a message, where it is and what: one line a till's
    integrator can act on (the whole pydantic report is long and repeats itself)."""
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "event"
    return f"{where}: {first['msg']}"


def invalid(error: ValidationError) -> HTTPException:
    return HTTPException(422, problem(error))


def not_recognised(caller: str, token: str, setting: str) -> HTTPException:
    """401 with the header and the hint an installer needs to configure the caller."""
    return HTTPException(
        401,
        f"{caller} not recognised: send 'Authorization: Bearer <{token}>' "
        f"({setting} in the lane's settings)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def socket_refused(reason: str) -> WebSocketException:
    return WebSocketException(WS_POLICY_VIOLATION, reason)
