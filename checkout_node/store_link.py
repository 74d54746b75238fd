"""How a lane reaches its store server: HTTPS to the one certificate its store vouched for.

The lane trusts no CA. Before its first request to a store (and so before its enrolment token
or credential goes anywhere) it takes the certificate the server presents and the server's
binding for it, and keeps the certificate only if the binding is signed by the store key it
already trusts: the key id its enrolment token ends in (or ``store_key_id``), and after
enrolment the key its credential came with (laneguard.tls). Every connection then trusts that
certificate alone (``store-certificate.pem`` in the data folder). When the store's certificate
changes (renewed by IT, or the server's own remade), a connection fails verification; the lane
checks the new one the same way and carries on, or refuses it and keeps retrying.

Plain HTTP is refused unless the lane's settings allow it (a lab lane): the token, the
credential and the evidence would cross the store network readable by anyone on it.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from laneguard.files import write_bytes_atomic
from laneguard.tls import (
    TlsBindingError,
    issued_at,
    leaf_certificate,
    pinned_context,
    presented_certificate,
    verify_binding,
)
from product_db.errors import LaneGuardError

log = logging.getLogger("laneguard.node.store_link")
PINNED_CERTIFICATE = "store-certificate.pem"
PIN_RECORD = "store-certificate.json"  # which store (URL, key id) the pin is for
BINDING_PATH = "/api/v1/tls-binding"


class PlainHttpRefused(LaneGuardError, ValueError):
    """The store server's URL is plain HTTP and the lane's settings do not allow it."""


def check_scheme(url: str, allow_plain_http: bool) -> None:
    """Refuse a store URL the lane may not use: anything but https, or http when allowed."""
    scheme = urlsplit(url).scheme
    if scheme == "https" or (scheme == "http" and allow_plain_http):
        return
    if scheme == "http":
        raise PlainHttpRefused(
            f"the store server {url} is plain HTTP: its token, credential and evidence would be "
            "readable on the network. Serve the store over HTTPS (its tls setting), or set "
            "allow_plain_http: true on a lab lane"
        )
    raise PlainHttpRefused(f"the store server URL {url!r} is neither https:// nor http://")


class StoreLink:
    """The store's URL and the certificate pinned for it; thread-safe (the uploader, gallery
    follower and updater share one)."""

    def __init__(
        self,
        url: str,
        data_dir: Path,
        expected_key_id: Callable[[], str | None],
        allow_plain_http: bool = False,
        timeout_s: float = 10.0,
    ) -> None:
        check_scheme(url, allow_plain_http)
        parts = urlsplit(url)
        self.url, self.tls = url.rstrip("/"), parts.scheme == "https"
        self.host, self.port = parts.hostname or "", parts.port or (443 if self.tls else 80)
        self.pin_file = Path(data_dir) / PINNED_CERTIFICATE
        self.pin_record = Path(data_dir) / PIN_RECORD
        self.expected_key_id, self.timeout_s = expected_key_id, timeout_s
        self._lock = threading.Lock()
        self._pinned: tuple[ssl.SSLContext, int] | None = None  # the context and its generation
        self._generation = 0  # bumped each time a certificate is pinned

    def transport(self) -> httpx.BaseTransport | None:
        """What an httpx client to the store sends through (None: plain HTTP, httpx's own)."""
        return PinnedTransport(self) if self.tls else None

    def context(self) -> tuple[ssl.SSLContext, int]:
        """The client context trusting the pinned certificate (learned on first use, or when
        the kept pin is unreadable or was for another store) and its generation."""
        pinned = self._pinned
        if pinned is not None:
            return pinned
        with self._lock:
            if self._pinned is None:
                kept = self._kept_pin()
                if kept is not None:
                    self._pinned = (pinned_context(kept), self._generation)
                else:
                    self._learn_locked(previous=None)
            assert self._pinned is not None
            return self._pinned

    def relearn(self, seen_generation: int) -> None:
        """The pinned certificate failed verification: check the one the server presents now
        (unless another thread already did since ``seen_generation``). Only a certificate made
        after the pinned one is taken: a replaced one, whose key may have leaked, never again."""
        with self._lock:
            if self._generation == seen_generation:
                self._learn_locked(previous=self._kept_pin())

    def _kept_pin(self) -> str | None:
        """The pinned certificate, if the file holds one for this store's URL and key."""
        try:
            record = json.loads(self.pin_record.read_text("utf-8"))
            pem = self.pin_file.read_text("utf-8")
            leaf_certificate(pem)
        except (OSError, ValueError):
            return None
        if record != {"url": self.url, "key_id": self.expected_key_id()}:
            return None
        return pem

    def _learn_locked(self, previous: str | None) -> None:
        expected = self.expected_key_id()
        if expected is None:
            raise TlsBindingError(
                "no store key to check the store's certificate against: the enrolment token "
                "names none; set store_key_id (`laneguard server key-id` on the store server)"
            )
        try:
            pem = presented_certificate(self.host, self.port, self.timeout_s)
            # The binding is signed, so it may come over a connection trusting the very
            # certificate it is about; nothing secret is sent on it.
            with httpx.Client(
                base_url=self.url, verify=pinned_context(pem), timeout=self.timeout_s
            ) as client:
                reply = client.get(BINDING_PATH)
        except OSError as error:
            raise httpx.ConnectError(f"checking the store's certificate: {error}") from error
        if reply.status_code == 404:
            raise TlsBindingError(f"{self.url} serves no certificate binding")
        reply.raise_for_status()
        try:
            answer = reply.json()
        except ValueError:
            raise TlsBindingError(f"{self.url} answered the binding request with no JSON") from None
        try:
            verify_binding(answer, pem, expected)
            if previous is not None and issued_at(pem) <= issued_at(previous):
                raise TlsBindingError(
                    "the store vouched for this certificate once, but it is not newer than the "
                    "pinned one (a replaced certificate is never taken back)"
                )
        except TlsBindingError as error:
            log.error("refused the certificate %s presents: %s", self.url, error)
            raise
        write_bytes_atomic(self.pin_file, pem.encode(), mode=0o600)
        record = json.dumps({"url": self.url, "key_id": expected}).encode()
        write_bytes_atomic(self.pin_record, record, mode=0o600)
        self._generation += 1
        self._pinned = (pinned_context(pem), self._generation)
        log.info("pinned the store's certificate for %s (vouched for by %s)", self.url, expected)


class PinnedTransport(httpx.BaseTransport):
    """httpx transport to the store over the pinned certificate. A connection that fails
    verification (the certificate changed) re-checks the new certificate through the store's
    key and is tried once more; nothing is sent before a certificate is trusted. Whatever goes
    wrong on the way is an httpx.ConnectError, which every caller treats as the store being
    away (it retries later)."""

    def __init__(self, link: StoreLink) -> None:
        self.link = link
        self._inner: httpx.HTTPTransport | None = None
        self._generation = -1
        self._lock = threading.Lock()

    def _current(self, request: httpx.Request) -> tuple[httpx.HTTPTransport, int]:
        try:
            context, generation = self.link.context()
        except httpx.ConnectError:
            raise
        except Exception as error:  # a refused certificate, an unreadable pin, a full disk
            refused = f"the store's certificate is refused: {error}"
            raise httpx.ConnectError(refused, request=request) from error
        with self._lock:
            if self._inner is None or self._generation != generation:
                if self._inner is not None:
                    self._inner.close()
                self._inner = httpx.HTTPTransport(verify=context)
                self._generation = generation
            return self._inner, generation

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        inner, generation = self._current(request)
        try:
            return inner.handle_request(request)
        except httpx.ConnectError as error:
            if "CERTIFICATE_VERIFY_FAILED" not in str(error):
                raise
            log.warning("the store's certificate changed (%s); checking the new one", error)
            try:
                self.link.relearn(generation)
            except httpx.ConnectError:
                raise
            except Exception as refused:
                why = f"the store's new certificate is refused: {refused}"
                raise httpx.ConnectError(why, request=request) from refused
            inner, _ = self._current(request)
            return inner.handle_request(request)

    def close(self) -> None:
        with self._lock:
            if self._inner is not None:
                self._inner.close()
                self._inner = None
