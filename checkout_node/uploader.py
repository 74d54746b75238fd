"""Delivers the outbox to the store server: batches, retries with backoff, never loses a record.

The uploader sends the most important messages first (alerts, then transactions, alert clips,
heartbeats, samples) in batches (capped in bytes too) to the server's ingest endpoint. Stored and
duplicate answers both mean delivered, once the store's signed receipt for that very batch
verifies with the store's key (laneguard.receipts): a reply it cannot verify removes nothing.
A message the server refuses as invalid goes to the outbox's dead letters. When the server
cannot be reached, answers 5xx or times out, nothing is removed and the uploader waits, doubling
the wait each time up to 15 seconds (with jitter, so a store's lanes do not all return at once),
and starts again at full speed once a delivery succeeds.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from checkout_node.enrolment import LaneEnrolmentError, enrol
from checkout_node.outbox import Entry, Outbox
from laneguard.receipts import verified_outcomes, verify_refusal
from laneguard.signing import SignatureError, SigningKeyError, public_key_from_pem

log = logging.getLogger("laneguard.node.uploader")


@dataclass
class DeliveryReport:
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    failed: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Enrolment:
    token: str
    data_dir: Path
    lane_id: str


@dataclass
class Uploader:
    outbox: Outbox
    server_url: str
    token: str | None = None
    batch: int = 100
    batch_bytes: int = 8 << 20  # well under the server's ingest cap (32 MB by default)
    timeout_s: float = 10.0
    first_backoff_s: float = 0.5
    max_backoff_s: float = 15.0
    idle_s: float = 0.5

    enrolment: Enrolment | None = None  # how to get a credential when there is none yet
    # The store's public key (PEM, learned at enrolment) and this lane's id: what a receipt
    # must be signed with and name. Without a key (a credential configured by hand) replies are
    # taken as they come.
    store_key_pem: str | None = None
    lane_id: str | None = None
    # How requests reach the store: the pinned certificate's transport (StoreLink), or None
    # for httpx's own (plain HTTP on a lab lane, or a test's server).
    transport: httpx.BaseTransport | None = None

    def __post_init__(self) -> None:
        self.client = httpx.Client(
            base_url=self.server_url.rstrip("/"), timeout=self.timeout_s, transport=self.transport
        )
        if self.token:
            self.client.headers["Authorization"] = f"Bearer {self.token}"
        self.failures = 0  # consecutive failed attempts
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def backoff_s(self) -> float:
        base = min(self.max_backoff_s, self.first_backoff_s * 2 ** max(self.failures - 1, 0))
        return base * random.uniform(0.5, 1.0)

    def deliver_once(self) -> DeliveryReport:
        """Send one batch of what is due; returns what happened to it."""
        entries = self.outbox.due(self.batch, max_bytes=self.batch_bytes)
        report = DeliveryReport(sent=len(entries))
        if not entries:
            return report
        if not self.token and self.enrolment is not None:
            try:
                self._enrol(self.enrolment)
            except (httpx.HTTPError, LaneEnrolmentError) as error:
                ids = [e.message_id for e in entries]
                return self._failed(ids, f"enrolment: {type(error).__name__}: {error}", report)
        body = b'{"messages":[' + b",".join(e.payload for e in entries) + b"]}"
        ids = [e.message_id for e in entries]
        try:
            response = self.client.post(
                "/api/v1/ingest", content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as error:
            return self._failed(ids, f"{type(error).__name__}: {error}", report)
        if response.status_code >= 500 or response.status_code in (401, 408, 429):
            return self._failed(ids, f"HTTP {response.status_code}: {response.text[:200]}", report)
        if response.status_code >= 400:  # the batch as a whole was refused: find the culprit
            try:
                self._trusted_refusal(response, body)
            except (SignatureError, SigningKeyError, ValueError) as error:
                why = f"HTTP {response.status_code} the store did not sign: {error}"
                return self._failed(ids, why, report)
            if len(entries) == 1:
                self.outbox.reject(ids[0], f"HTTP {response.status_code}: {response.text[:500]}")
                report.rejected = 1
                return report
            return self._one_by_one(entries, report)
        try:
            answer = response.json()
            errors = {r.get("message_id"): r.get("error") for r in answer.get("results", [])}
            statuses = self._trusted_statuses(answer, body)
        except (SignatureError, SigningKeyError, ValueError, AttributeError) as error:
            return self._failed(ids, f"the store's reply is not to be trusted: {error}", report)
        delivered = []
        for message_id in ids:
            status = statuses.get(message_id)
            if status is None:
                continue  # not answered for: stays queued
            if status == "rejected":
                self.outbox.reject(message_id, str(errors.get(message_id)))
                report.rejected += 1
            else:
                delivered.append(message_id)
        self.outbox.delivered(delivered)
        report.delivered = len(delivered)
        self.failures, self.last_error = 0, None
        return report

    def _trusted_statuses(self, answer: dict[str, Any], body: bytes) -> dict[str, str]:
        """Message id -> status, from the store's signed receipt when the lane knows the
        store's key (raises SignatureError when it does not verify for this batch)."""
        if self.store_key_pem is None:
            return {
                str(r.get("message_id")): str(r.get("status")) for r in answer.get("results", [])
            }
        key = public_key_from_pem(self.store_key_pem, "the store's key")
        return verified_outcomes(answer.get("receipt"), self.lane_id or "", body, key)

    def _trusted_refusal(self, response: httpx.Response, body: bytes) -> None:
        """Raises unless the store signed this refusal of this batch (when the lane knows the
        store's key): a forged 4xx must not move messages aside, which loses them as surely
        as deleting them."""
        if self.store_key_pem is None:
            return
        key = public_key_from_pem(self.store_key_pem, "the store's key")
        receipt = response.json().get("receipt")
        verify_refusal(receipt, self.lane_id or "", body, response.status_code, key)

    def _enrol(self, enrolment: Enrolment) -> None:
        credential = enrol(self.client, enrolment.token, enrolment.data_dir, enrolment.lane_id)
        log.info("enrolled as %s", credential.lane_id)
        self.store_key_pem, self.lane_id = credential.gallery_key, credential.lane_id
        self.token = credential.credential
        self.client.headers["Authorization"] = f"Bearer {self.token}"

    def _one_by_one(self, entries: list[Entry], report: DeliveryReport) -> DeliveryReport:
        batch, self.batch = self.batch, 1
        try:
            for _ in entries:
                single = self.deliver_once()
                report.delivered += single.delivered
                report.rejected += single.rejected
                report.failed += single.failed
                if single.failed:
                    break
        finally:
            self.batch = batch
        return report

    def _failed(self, ids: list[str], error: str, report: DeliveryReport) -> DeliveryReport:
        self.failures += 1
        self.last_error = error
        delay = self.backoff_s()
        self.outbox.retry_later(ids, error, delay)
        if self.failures in (1, 5) or self.failures % 20 == 0:
            log.warning("store server unreachable (%s); retrying in %.1f s", error, delay)
        report.failed, report.error = len(ids), error
        return report

    # -- background ---------------------------------------------------------------------------
    def run(self) -> None:
        while not self._stop.is_set():
            try:
                report = self.deliver_once()
            except Exception:  # the thread must outlive any one bad reply or disk hiccup
                log.exception("delivering the outbox failed; trying again")
                report = DeliveryReport(failed=1)
            if report.failed:
                self._stop.wait(self.backoff_s())
            elif report.sent == 0:
                self._stop.wait(self.idle_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="uploader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)
        self.client.close()
