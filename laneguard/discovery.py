"""Finding the store server on the store's network, for a lane's first boot (zero-touch).

A lane configured with ``server_url: discover`` sends a small UDP datagram to the local network
(broadcast, and this computer for a one-machine demo); each store server answers with its URL
and name. The enrolment token still decides whether the lane may join: discovery only says
where to present it, and a lane keeps the URL it found, so it asks only once.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from dataclasses import dataclass

log = logging.getLogger("laneguard.discovery")
DISCOVERY_PORT = 47800
QUERY = b"LANEGUARD-DISCOVER 1"


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
        public_url: str | None = None,
    ) -> None:
        self.port, self.http_host, self.http_port = port, http_host, http_port
        self.store_name, self.public_url = store_name, public_url
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", port))
        self.sock.settimeout(0.5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="discovery")

    def _answer(self, sender: tuple[str, int]) -> bytes:
        if self.public_url:
            url = self.public_url
        elif self.http_host not in ("", "0.0.0.0", "::"):  # serving on that address only
            url = f"http://{self.http_host}:{self.http_port}"
        else:  # on every address: the one the lane reached us on, found by routing towards it
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(sender)
                url = f"http://{probe.getsockname()[0]}:{self.http_port}"
        return json.dumps(
            {"service": "laneguard-store", "url": url, "store": self.store_name}
        ).encode()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            except OSError:
                return
            if data.strip() == QUERY:
                self.sock.sendto(self._answer(sender), sender)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def discover_store(port: int = DISCOVERY_PORT, timeout_s: float = 2.0) -> StoreFound | None:
    """Ask the local network (and this computer) for a store server; the first answer wins."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.settimeout(timeout_s)
        for target in ("255.255.255.255", "127.0.0.1"):
            try:
                sock.sendto(QUERY, (target, port))
            except OSError as error:  # no broadcast route (e.g. no network yet)
                log.debug("discovery to %s failed: %s", target, error)
        try:
            while True:
                data, _sender = sock.recvfrom(1024)
                try:
                    answer = json.loads(data)
                except ValueError:
                    continue
                if isinstance(answer, dict) and answer.get("service") == "laneguard-store":
                    return StoreFound(str(answer["url"]), str(answer.get("store", "")))
        except TimeoutError:
            return None
