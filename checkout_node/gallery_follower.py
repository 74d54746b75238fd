"""Keeps the lane's gallery up to date with what its store learned from honest transactions.

Every few seconds the follower asks the store server for gallery entries after the last one it
has, checks the store's signature (its public key came with the lane's enrolment), and hands
the lane a gallery with them added; the lane switches to it between transactions, never during
one. Learned entries are kept in the lane's data folder, so a restart starts from them.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from checkout_node.polling import poll_until_stopped
from laneguard.files import write_json_atomic
from laneguard.gallery import Gallery
from laneguard.signing import SignatureError, public_key_from_pem, verify_json

log = logging.getLogger("laneguard.node.gallery")
STATE_FILE = "gallery-updates.json"


def with_entries(base: Gallery, entries: dict[int, tuple[str, np.ndarray]]) -> Gallery:
    """``base`` plus learned reference vectors (a code new to the gallery gets its own class)."""
    if not entries:
        return base
    codes = list(base.codes)
    index = {code: i for i, code in enumerate(codes)}
    vectors, labels = [base.vectors], [base.labels]
    for _, (code, vector) in sorted(entries.items()):
        if code not in index:
            index[code] = len(codes)
            codes.append(code)
        vectors.append(vector[None, :].astype(np.float32))
        labels.append(np.array([index[code]], np.int32))
    return Gallery(
        codes,
        np.concatenate(vectors),
        np.concatenate(labels),
        base.embedder_sha256,
        f"{base.version}+{max(entries)}",
    )


@dataclass
class GalleryFollower:
    server_url: str
    credential: Callable[[], str | None]  # the lane's credential once it has one
    store_key_pem: Callable[[], str | None]
    base: Gallery
    on_gallery: Callable[[Gallery], None]  # the lane stages it for its next transaction
    data_dir: Path
    poll_s: float = 5.0
    latest: int = 0
    entries: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)
    transport: httpx.BaseTransport | None = None  # the store link's (pinned certificate)

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.server_url.rstrip("/"), timeout=10.0, transport=self.transport
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._load()
        if self.entries:
            self.on_gallery(with_entries(self.base, self.entries))

    def poll_once(self) -> int:
        """Fetch, verify and apply what is new; returns how many entries changed."""
        credential, pem = self.credential(), self.store_key_pem()
        if credential is None or pem is None:
            return 0  # not enrolled yet
        asked = self.latest
        reply = self.client.get(
            "/api/v1/gallery/updates",
            params={"since": asked},
            headers={"Authorization": f"Bearer {credential}"},
        )
        reply.raise_for_status()
        body: dict[str, Any] = reply.json()
        verify_json(body, public_key_from_pem(pem, "the store's gallery key"))
        # The signature covers "since": an older answer replayed (say, from before an entry
        # was withdrawn) answers another question and is refused.
        if body.get("since") != asked or int(body["latest"]) < asked:
            raise SignatureError(
                f"gallery update answers since={body.get('since')}, not since={asked} "
                "(replayed or out of order)"
            )
        if any(int(entry["id"]) <= asked for entry in body["entries"]):
            raise SignatureError(f"gallery update holds entries from before {asked}")
        changed = 0
        for entry in body["entries"]:
            if entry["embedder_sha256"] != self.base.embedder_sha256:
                continue  # made for another model; the next bundle brings its own gallery
            if entry.get("withdraws") is not None:  # the store took an entry back
                changed += self.entries.pop(int(entry["withdraws"]), None) is not None
                continue
            vector = np.frombuffer(base64.b64decode(entry["vector"]), dtype="<f4").copy()
            self.entries[int(entry["id"])] = (entry["code"], vector)
            changed += 1
        self.latest = int(body["latest"])
        if changed:
            self._save()
            self.on_gallery(with_entries(self.base, self.entries))
            log.info("gallery: %d learned entries (up to %d)", len(self.entries), self.latest)
        return changed

    def rebase(self, base: Gallery) -> Gallery:
        """A new bundle went live: its gallery plus what was learned for its embedder (entries
        made for another embedder are dropped and asked for again from the start)."""
        if base.embedder_sha256 != self.base.embedder_sha256:
            self.entries, self.latest = {}, 0
        self.base = base
        return with_entries(base, self.entries)

    def run(self) -> None:
        errors = (httpx.HTTPError, SignatureError, ValueError, KeyError)
        poll_until_stopped(self._stop, self.poll_once, self.poll_s, errors, "gallery update")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="gallery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.client.close()

    def _save(self) -> None:
        state = {
            "latest": self.latest,
            "embedder_sha256": self.base.embedder_sha256,
            "entries": {
                str(i): [code, base64.b64encode(v.astype("<f4").tobytes()).decode()]
                for i, (code, v) in self.entries.items()
            },
        }
        write_json_atomic(self.data_dir / STATE_FILE, state)

    def _load(self) -> None:
        path = self.data_dir / STATE_FILE
        if not path.is_file():
            return
        state = json.loads(path.read_text())
        if state.get("embedder_sha256") != self.base.embedder_sha256:
            return  # learned for the previous model
        self.latest = int(state["latest"])
        self.entries = {
            int(i): (code, np.frombuffer(base64.b64decode(b64), dtype="<f4").copy())
            for i, (code, b64) in state["entries"].items()
        }
