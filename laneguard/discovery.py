"""Finding the store server on the store's network, for a lane's first boot (zero-touch).

A lane configured with ``server_url: discover`` sends a small UDP datagram with a random nonce
to the local network (broadcast, and this computer for a one-machine demo); each store server
answers with its URL and name, its public key and its signature over all of it and the nonce.
The lane takes only an answer signed by the store its enrolment token names (the token ends in
that store's key id, see enrolment_key_id), so a machine answering in the store's place is
ignored and never sees the token. A lane keeps the URL it found, so it asks only once.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socket
import threading
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from laneguard.signing import SignatureError, key_id, sign_json, verify_json

log = logging.getLogger("laneguard.discovery")
DISCOVERY_PORT = 47800
QUERY = b"LANEGUARD-DISCOVER 2 "  # then the lane's nonce, 32 hex digits


def token_naming_store(secret: str, store_key_id: str | None) -> str:
    """An enrolment token as the store hands it out: ``<secret>.<store key id>`` (the lane
    then trusts only that store), or the secret alone."""
    return f"{secret}.{store_key_id}" if store_key_id else secret


def enrolment_key_id(token: str | None) -> str | None:
    """The store key id an enrolment token carries (``<secret>.<key id>``), if any."""
    if not token or "." not in token:
        return None
    candidate = token.rsplit(".", 1)[1]
    return (
        candidate
        if len(candidate) == 16 and all(c in "0123456789abcdef" for c in candidate)
        else None
    )


@dataclass(frozen=True)
class StoreFound:
    url: str
    store_name: str


class DiscoveryResponder:
    """The store server's side: answers discovery datagrams with where it serves."""

    def __init__(
        self,
        port: int,
        http_host: str,
        http_port: int,
        store_name: str,
        key: Ed25519PrivateKey,
        public_url: str | None = None,
        scheme: str = "https",
    ) -> None:
        self.port, self.http_host, self.http_port = port, http_host, http_port
        self.scheme = scheme
        self.store_name, self.public_url, self.key = store_name, public_url, key
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", port))
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="discovery")

    def _answer(self, sender: tuple[str, int], nonce: str) -> bytes:
        if self.public_url:
            url = self.public_url
        elif self.http_host not in ("", "0.0.0.0", "::"):  # serving on that address only
            url = f"{self.scheme}://{self.http_host}:{self.http_port}"
        else:  # on every address: the one the lane reached us on, found by routing towards it
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(sender)
                url = f"{self.scheme}://{probe.getsockname()[0]}:{self.http_port}"
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        body: dict[str, object] = {
            "service": "laneguard-store",
            "url": url,
            "store": self.store_name,
            "public_key": base64.b64encode(raw).decode(),
            "nonce": nonce,
        }
        return json.dumps(sign_json(body, self.key)).encode()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            nonce = data.strip()[len(QUERY) :].decode("ascii", "replace")
            if data.startswith(QUERY) and len(nonce) == 32:
                self.sock.sendto(self._answer(sender, nonce), sender)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def verified_answer(data: bytes, nonce: str, expected_key_id: str) -> StoreFound | None:
    """The store in a discovery answer, if it is signed by the expected store's key and
    answers this very query; None (logged) for anything else."""
    try:
        answer = json.loads(data)
        if not isinstance(answer, dict) or answer.get("service") != "laneguard-store":
            return None
        public = Ed25519PublicKey.from_public_bytes(base64.b64decode(answer["public_key"]))
        if key_id(public) != expected_key_id:
            log.warning("ignored a discovery answer from store key %s", key_id(public))
            return None
        verify_json(answer, public)
        if answer.get("nonce") != nonce:
            log.warning("ignored a replayed discovery answer")
            return None
        return StoreFound(str(answer["url"]), str(answer.get("store", "")))
    except (ValueError, KeyError, TypeError, SignatureError) as error:
        log.warning("ignored a discovery answer that does not verify: %s", error)
        return None


def discover_store(
    expected_key_id: str, port: int = DISCOVERY_PORT, timeout_s: float = 2.0
) -> StoreFound | None:
    """Ask the local network (and this computer) for the store whose key is
    ``expected_key_id``; the first answer that store signed wins."""
    nonce = secrets.token_hex(16)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.settimeout(timeout_s)
        for target in ("255.255.255.255", "127.0.0.1"):
            try:
                sock.sendto(QUERY + nonce.encode(), (target, port))
            except OSError as error:  # no broadcast route (e.g. no network yet)
                log.debug("discovery to %s failed: %s", target, error)
        try:
            while True:
                data, _sender = sock.recvfrom(2048)
                found = verified_answer(data, nonce, expected_key_id)
                if found is not None:
                    return found
        except TimeoutError:
            return None
