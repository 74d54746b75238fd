"""Machine callers recognised by a bearer token, or by calling from the same computer.

Tills on a lane and Prometheus scrapers on either server carry ``Authorization: Bearer
<token>``; a service configured with no tokens for a caller accepts that caller from loopback
only, which suits a till program or a monitoring agent on the same box and nothing else.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bearer_allowed(
    tokens: tuple[str, ...], headers: Mapping[str, str], client_host: str | None
) -> bool:
    """``Authorization: Bearer`` one of ``tokens``; with no tokens, loopback callers only."""
    if not tokens:
        return is_loopback(client_host)
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return any(hmac.compare_digest(token.strip(), known) for known in tokens)
