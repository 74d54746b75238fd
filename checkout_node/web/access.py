"""Who may use the lane's web server, and how each is recognised.

- The till (POS integration): ``Authorization: Bearer <token>`` with one of the lane's
  ``pos_tokens`` (one per till, from the lane's settings). A lane configured with none accepts
  the POS API from its own computer only (loopback), which is how a till program running on
  the lane, the demo and the simulator talk to it.
- The cashier's screen: a session cookie the kiosk gets at start by opening
  ``/screen/session?key=<screen key>``. The screen key is in the lane's settings or, by
  default, made once in its data folder (``screen-key``, 0600, readable by the lane's user
  and the kiosk script). The cookie is HttpOnly and SameSite=Strict, and its value is derived
  from the key, so it survives a lane restart and no page on another site can use it.
- Monitoring (Prometheus scraping ``/metrics``): ``Authorization: Bearer <token>`` with one of
  ``metrics_tokens``; with none configured, from the lane's own computer only, as the till.
- A supervisor override also needs a supervisor PIN: ``supervisor_pins`` holds PBKDF2 hashes
  (`laneguard node hash-pin`); five wrong PINs lock overrides for a minute.
- Browsers: any request or websocket that carries an ``Origin`` must come from the lane's own
  pages (a loopback address, or one of ``screen_origins``); tills send none. With the session
  cookie SameSite=Strict and JSON required on every POST, a page on a store PC cannot send
  scans or resolve alerts through a cashier's browser.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from laneguard.bearer import bearer_allowed, is_loopback
from product_db.errors import LaneGuardError

SCREEN_COOKIE = "lg_screen"
SCREEN_KEY_FILE = "screen-key"
PIN_SCHEME = "pbkdf2_sha256"
PIN_ITERATIONS = 200_000
PIN_TRIES = 5
PIN_LOCK_S = 60.0
TICKET_S = 60.0  # a screen sign-in ticket is good for this long, and once
MAX_TICKETS = 16


class SupervisorPinError(LaneGuardError, ValueError):
    """A supervisor PIN or badge code that cannot be hashed: too short, too long or unprintable."""


def hash_pin(pin: str, iterations: int = PIN_ITERATIONS) -> str:
    """A supervisor PIN as the lane's settings keep it (the PIN itself is never stored)."""
    if not (4 <= len(pin) <= 32) or not pin.isprintable():
        raise SupervisorPinError("a supervisor PIN or badge code is 4-32 printable characters")
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, iterations)
    return f"{PIN_SCHEME}${iterations}${salt.hex()}${digest.hex()}"


def pin_matches(pin: str, stored: str) -> bool:
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != PIN_SCHEME:
            return False
        candidate = hashlib.pbkdf2_hmac(
            "sha256", pin.encode(), bytes.fromhex(salt), int(iterations)
        )
    except ValueError:
        return False
    return hmac.compare_digest(candidate.hex(), digest)


def screen_key_from(data_dir: Path, configured: str | None) -> str:
    """The configured screen key, or the one kept in the data folder (made on first use)."""
    if configured:
        return configured
    path = data_dir / SCREEN_KEY_FILE
    if path.is_file():
        return path.read_text("utf-8").strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(24)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


@dataclass
class LaneAccess:
    screen_key: str
    pos_tokens: tuple[str, ...] = ()
    supervisor_pins: tuple[str, ...] = ()
    screen_origins: frozenset[str] = frozenset()
    metrics_tokens: tuple[str, ...] = ()
    _pin_failures: list[float] = field(default_factory=list)
    _tickets: dict[str, float] = field(default_factory=dict)  # ticket -> issued (monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def random(cls) -> LaneAccess:
        """A lane with a fresh screen key and no tills configured (replays, evaluations)."""
        return cls(secrets.token_urlsafe(24))

    @property
    def screen_cookie(self) -> str:
        return hmac.new(self.screen_key.encode(), b"lane-screen-session", "sha256").hexdigest()

    @property
    def screen_cookie_name(self) -> str:
        """``lg_screen_`` and a tag of this lane's key: browsers keep cookies per host, not per
        port, so two lanes' screens open in one browser (a demo, a supervisor's laptop) would
        sign each other out under one name."""
        tag = hmac.new(self.screen_key.encode(), b"lane-screen-cookie-name", "sha256")
        return f"{SCREEN_COOKIE}_{tag.hexdigest()[:12]}"

    def key_matches(self, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(
            str(presented).encode(), self.screen_key.encode()
        )

    def issue_ticket(self) -> str:
        """A one-time screen sign-in for the kiosk, given for the screen key: the kiosk opens
        ``/screen/session?ticket=...``, so the key itself never sits on the browser's command
        line, where every local user can read it (``ps``)."""
        ticket = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            live = {t: at for t, at in self._tickets.items() if now - at < TICKET_S}
            self._tickets = dict(sorted(live.items(), key=lambda kv: kv[1])[-(MAX_TICKETS - 1) :])
            self._tickets[ticket] = now
        return ticket

    def spend_ticket(self, presented: str | None) -> bool:
        """True once for a ticket issued in the last ``TICKET_S``."""
        if not presented:
            return False
        with self._lock:
            issued = self._tickets.pop(str(presented), None)
        return issued is not None and time.monotonic() - issued < TICKET_S

    def screen_signed_in(self, cookies: Mapping[str, str]) -> bool:
        presented = cookies.get(self.screen_cookie_name, "")
        return bool(presented) and hmac.compare_digest(presented, self.screen_cookie)

    def pos_allowed(self, headers: Mapping[str, str], client_host: str | None) -> bool:
        """A till with one of the lane's tokens; with none configured, this computer only."""
        return bearer_allowed(self.pos_tokens, headers, client_host)

    def metrics_allowed(self, headers: Mapping[str, str], client_host: str | None) -> bool:
        """A scraper with one of the metrics tokens; with none configured, this computer only."""
        return bearer_allowed(self.metrics_tokens, headers, client_host)

    def origin_allowed(self, headers: Mapping[str, str]) -> bool:
        """No Origin (a till, curl), or a page of the lane's own."""
        origin = headers.get("origin")
        if origin is None:
            return True
        if origin in self.screen_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and is_loopback(parts.hostname)

    def check_pin(self, pin: str | None) -> str | None:
        """None when ``pin`` is a supervisor's; else why not (wrong, locked, none set up)."""
        if not self.supervisor_pins:
            return "no supervisor PIN is set up on this lane (supervisor_pins in its settings)"
        now = time.monotonic()
        with self._lock:
            self._pin_failures[:] = [t for t in self._pin_failures if now - t < PIN_LOCK_S]
            if len(self._pin_failures) >= PIN_TRIES:
                return "too many wrong PINs: supervisor overrides are locked for a minute"
            if pin and any(pin_matches(pin, stored) for stored in self.supervisor_pins):
                self._pin_failures.clear()
                return None
            self._pin_failures.append(now)
            return "the supervisor PIN is wrong"


def origins(values: Iterable[str]) -> frozenset[str]:
    return frozenset(value.rstrip("/") for value in values)
