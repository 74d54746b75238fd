"""Store enrolment and store credentials at HQ (the chain's counterpart of store_server.lanes).

An HQ IT admin adds a store (console or `laneguard hq store add`) and gets a one-time token.
The store presents it once, with the public half of its signing key, at
``POST /api/v1/hq/enrol``; it gets its store id, a credential for HQ's HTTP API (kept here only
as a SHA-256 digest), the broker's address and HQ's public key. From then on HQ takes only
messages signed by that store's key on that store's subjects.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hq_server.models import Store, StoreToken
from laneguard.chain import STORE_ID
from laneguard.signing import key_id, public_key_from_pem
from product_db.errors import LaneGuardError
from product_db.models import as_utc, utcnow
from store_server.auth import audit, sha256
from store_server.deps import get_engine

TOKEN_HOURS = 72


class StoreEnrolmentError(LaneGuardError, ValueError):
    """A token that is unknown, used or expired, a store id that cannot be given, or a key
    that is not an Ed25519 public key."""


def add_store(
    session: Session, store_id: str, name: str, created_by: str, hours: float = TOKEN_HOURS
) -> str:
    """Record ``store_id`` and return a one-time enrolment token for it (only its digest is
    kept). A store enrolled before needs ``retire_store`` first."""
    if not STORE_ID.match(store_id):
        raise StoreEnrolmentError(
            f"store id {store_id!r}: use 1-48 letters, digits, '_' or '-' (e.g. store-042)"
        )
    store = session.get(Store, store_id)
    if store is not None and store.active:
        raise StoreEnrolmentError(f"store {store_id} is already enrolled; retire it first")
    if store is None:
        session.add(Store(store_id=store_id, name=name or store_id))
    token = secrets.token_urlsafe(24)
    session.add(
        StoreToken(
            token_sha256=sha256(token),
            store_id=store_id,
            created_by=created_by,
            expires_at=utcnow() + timedelta(hours=hours),
        )
    )
    audit(session, created_by, "store.token_created", store_id)
    return token


@dataclass(frozen=True)
class EnrolledStore:
    store_id: str
    credential: str


def enrol_store(session: Session, token: str, name: str, public_key_pem: str) -> EnrolledStore:
    record = session.get(StoreToken, sha256(token))
    if record is None:
        raise StoreEnrolmentError("store enrolment token not recognised")
    if record.used_at is not None:
        raise StoreEnrolmentError("store enrolment token was already used; ask for a new one")
    if as_utc(record.expires_at) < utcnow():
        raise StoreEnrolmentError("store enrolment token has expired; ask for a new one")
    try:
        public_key_from_pem(public_key_pem, "the store's key")
    except ValueError as error:
        raise StoreEnrolmentError(str(error)) from None
    store = session.get(Store, record.store_id)
    assert store is not None
    credential = secrets.token_urlsafe(32)
    store.credential_sha256, store.public_key_pem = sha256(credential), public_key_pem.strip()
    store.active, store.enrolled_at = True, utcnow()
    if name:
        store.name = name[:120]
    record.used_at = utcnow()
    session.add_all([store, record])
    store_keys.forget(store.store_id)
    audit(session, f"store:{store.store_id}", "store.enrolled", store.store_id)
    return EnrolledStore(store.store_id, credential)


def retire_store(session: Session, store_id: str, username: str) -> None:
    store = session.get(Store, store_id)
    if store is None:
        raise StoreEnrolmentError(f"no store {store_id}")
    store.active, store.credential_sha256 = False, ""
    session.add(store)
    audit(session, username, "store.retired", store_id)
    store_keys.forget(store_id)


class StoreKeys:
    """Each active store's public key, loaded once (every message is checked against it). A
    message signed by another key id reloads it: the store may have enrolled again (its new
    key recorded by this or another HQ process)."""

    def __init__(self) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}

    def key(
        self, engine: Engine, store_id: str, presented: str | None = None
    ) -> Ed25519PublicKey | None:
        cached = self._keys.get(store_id)
        if cached is not None and (presented is None or key_id(cached) == presented):
            return cached
        with Session(engine) as session:
            store = session.get(Store, store_id)
        if store is None or not store.active or not store.public_key_pem:
            return None
        key = public_key_from_pem(store.public_key_pem, f"store {store_id}'s key")
        self._keys[store_id] = key
        return key

    def forget(self, store_id: str) -> None:
        self._keys.pop(store_id, None)


store_keys = StoreKeys()


def _store_for(engine: Engine, credential: str) -> str | None:
    with Session(engine) as session:
        store = session.exec(
            select(Store).where(Store.credential_sha256 == sha256(credential), Store.active == True)  # noqa: E712
        ).first()
    return store.store_id if store is not None else None


async def current_store(request: Request, engine: Annotated[Engine, Depends(get_engine)]) -> str:
    """The store whose credential this request carries (``Authorization: Bearer ...``)."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise HTTPException(
            401,
            "store credential missing: send 'Authorization: Bearer <credential>' "
            "(a store gets one by enrolling at /api/v1/hq/enrol)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    store_id = await asyncio.to_thread(_store_for, engine, credential.strip())
    if store_id is None:
        raise HTTPException(
            401, "store credential not recognised or retired", {"WWW-Authenticate": "Bearer"}
        )
    return store_id
