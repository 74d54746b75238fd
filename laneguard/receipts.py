"""Signed ingest receipts: what the store says it did with a lane's batch, that the lane can
believe.

The store signs, with its Ed25519 key (the one an enrolment token names and the lane learned
at enrolment), the lane's id, the SHA-256 of the exact request body and each message's
outcome. The lane removes a message from its outbox only on a receipt that verifies for the
batch it sent: a reply forged or altered between them (plain HTTP, a proxy) removes nothing,
and a receipt for another batch or another lane does not fit this one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from laneguard.signing import SignatureError, sign_json, verify_json


class Outcome(Protocol):
    @property
    def message_id(self) -> str | None: ...

    @property
    def status(self) -> str: ...


def ingest_receipt(
    lane_id: str, body: bytes, results: Sequence[Outcome], key: Ed25519PrivateKey
) -> dict[str, Any]:
    return sign_json(
        {
            "lane_id": lane_id,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "results": [[r.message_id, r.status] for r in results],
        },
        key,
    )


def refusal_receipt(
    lane_id: str, body: bytes, status: int, key: Ed25519PrivateKey
) -> dict[str, Any]:
    """The store's signed word that it refused this batch as a whole (HTTP ``status``): the
    lane then looks for the message at fault, and moves it aside, only on this."""
    return sign_json(
        {
            "lane_id": lane_id,
            "body_sha256": hashlib.sha256(body).hexdigest(),
            "refused": status,
        },
        key,
    )


def verify_refusal(
    receipt: Any, lane_id: str, body: bytes, status: int, key: Ed25519PublicKey
) -> None:
    """Raises SignatureError unless ``receipt`` is the store's refusal of this very batch."""
    _verified(receipt, lane_id, body, key)
    if receipt.get("refused") != status:
        raise SignatureError(f"the receipt does not refuse this batch with HTTP {status}")


def _verified(receipt: Any, lane_id: str, body: bytes, key: Ed25519PublicKey) -> dict[str, Any]:
    if not isinstance(receipt, dict):
        raise SignatureError("the store's reply carries no signed receipt")
    verify_json(receipt, key)
    if receipt.get("lane_id") != lane_id:
        raise SignatureError(f"the receipt is for lane {receipt.get('lane_id')!r}")
    if receipt.get("body_sha256") != hashlib.sha256(body).hexdigest():
        raise SignatureError("the receipt is for another batch")
    return receipt


def verified_outcomes(
    receipt: Any, lane_id: str, body: bytes, key: Ed25519PublicKey
) -> dict[str, str]:
    """Message id -> status from ``receipt``, once it verifies for this lane and this body;
    raises SignatureError otherwise."""
    results = _verified(receipt, lane_id, body, key).get("results")
    if not isinstance(results, list):
        raise SignatureError("the receipt's results are not a list")
    return {str(r[0]): str(r[1]) for r in results if isinstance(r, list) and len(r) == 2}
