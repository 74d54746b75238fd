"""Lane enrolment and lane credentials.

An IT admin creates a one-time enrolment token for a lane (console or `laneguard server lane
add`). The new lane presents it once at ``POST /api/v1/enrol`` and receives its lane id, its
configuration and its own credential: 256 random bits, stored here only as a SHA-256 digest.
Every later request of that lane carries the credential as a bearer token, and the server
accepts messages only for the lane the credential belongs to.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from laneguard.discovery import token_naming_store
from product_db.errors import LaneGuardError
from product_db.models import as_utc, utcnow
from store_server.app_state import get_engine
from store_server.auth import sha256
from store_server.models import EnrolmentToken, Lane, LaneHealth

STALE_S = 30.0  # a lane whose last heartbeat is older is offline


def lane_state(beat: LaneHealth | None, now: datetime) -> str:
    """What the Lanes page, the metrics and the MQTT events call a lane: "ok", "camera down",
    "offline" (its last heartbeat over ``STALE_S`` old) or "no heartbeat"."""
    if beat is None:
        return "no heartbeat"
    if (now - as_utc(beat.last_seen)).total_seconds() > STALE_S:
        return "offline"
    return "ok" if beat.camera == "up" else "camera down"


LANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
TOKEN_HOURS = 72


class EnrolmentError(LaneGuardError, ValueError):
    """A token that is unknown, used or expired, or a lane id that cannot be given."""


@dataclass(frozen=True)
class Enrolled:
    lane_id: str
    name: str
    credential: str
    config: dict[str, Any]


def create_enrolment_token(
    session: Session,
    lane_id: str,
    name: str,
    created_by: str,
    hours: float = TOKEN_HOURS,
    store_key_id: str | None = None,
) -> str:
    """A one-time token for ``lane_id``; returns the token (only its digest is kept). With
    ``store_key_id`` the token ends in ``.<key id>``: the lane then trusts only the store that
    signs with that key (discovery answers, its gallery key at enrolment)."""
    if not LANE_ID.match(lane_id):
        raise EnrolmentError(
            f"lane id {lane_id!r}: use 1-64 letters, digits, '.', '_' or '-' (e.g. lane-3)"
        )
    existing = session.get(Lane, lane_id)
    if existing is not None and existing.active:
        raise EnrolmentError(f"lane {lane_id} is already enrolled; retire it first")
    token = token_naming_store(secrets.token_urlsafe(24), store_key_id)
    session.add(
        EnrolmentToken(
            token_sha256=sha256(token),
            lane_id=lane_id,
            lane_name=name or lane_id,
            created_by=created_by,
            expires_at=utcnow() + timedelta(hours=hours),
        )
    )
    return token


def issue_enrolment_token(
    engine: Engine,
    lane_id: str,
    name: str = "",
    created_by: str = "system",
    hours: float = 72,
    store_key_id: str | None = None,
) -> str:
    """Create and commit a token (the CLI, the demo and tests use this)."""
    from store_server.auth import audit

    with Session(engine) as session:
        token = create_enrolment_token(session, lane_id, name, created_by, hours, store_key_id)
        audit(session, created_by, "lane.token_created", lane_id)
        session.commit()
    return token


def enrol(
    session: Session, token: str, hardware: dict[str, Any], config: dict[str, Any]
) -> Enrolled:
    """Spend ``token``: the lane gets its id, ``config`` and a fresh credential."""
    record = session.get(EnrolmentToken, sha256(token))
    if record is None:
        raise EnrolmentError("enrolment token not recognised")
    if record.used_at is not None:
        raise EnrolmentError("enrolment token was already used; ask for a new one")
    if as_utc(record.expires_at) < utcnow():
        raise EnrolmentError("enrolment token has expired; ask for a new one")
    credential = secrets.token_urlsafe(32)
    lane = session.get(Lane, record.lane_id)
    if lane is None:
        lane = Lane(lane_id=record.lane_id, name=record.lane_name, credential_sha256="")
    lane.name, lane.active, lane.enrolled_at = record.lane_name, True, utcnow()
    lane.credential_sha256, lane.config, lane.hardware = sha256(credential), config, hardware
    record.used_at = utcnow()
    session.add(lane)
    session.add(record)
    credentials.forget_lane(lane.lane_id)
    return Enrolled(lane.lane_id, lane.name, credential, config)


def retire(session: Session, lane_id: str) -> None:
    lane = session.get(Lane, lane_id)
    if lane is None:
        raise EnrolmentError(f"lane {lane_id} is not enrolled")
    lane.active = False
    session.add(lane)
    credentials.forget_lane(lane_id)


CREDENTIAL_CACHE_S = 30.0


class CredentialCache:
    """Credential digest -> lane id, so ingest checks a lane without a query per request.

    An entry lives ``ttl_s``: a lane retired or re-enrolled through another server process
    (a second worker, the CLI) is refused here within that time, not accepted forever."""

    def __init__(self, ttl_s: float = CREDENTIAL_CACHE_S) -> None:
        self.ttl_s = ttl_s
        self._lanes: dict[str, tuple[str, float]] = {}  # digest -> (lane id, cached at)
        self._lock = threading.Lock()

    def cached(self, credential: str) -> str | None:
        digest = sha256(credential)
        with self._lock:
            entry = self._lanes.get(digest)
            if entry is None:
                return None
            if time.monotonic() - entry[1] > self.ttl_s:
                del self._lanes[digest]
                return None
            return entry[0]

    def lane_for(self, engine: Engine, credential: str) -> str | None:
        cached = self.cached(credential)
        if cached is not None:
            return cached
        digest = sha256(credential)
        with Session(engine) as session:
            lane = session.exec(
                select(Lane).where(Lane.credential_sha256 == digest, Lane.active == True)  # noqa: E712
            ).first()
        if lane is None:
            return None
        with self._lock:
            self._lanes[digest] = (lane.lane_id, time.monotonic())
        return lane.lane_id

    def forget_lane(self, lane_id: str) -> None:
        with self._lock:
            self._lanes = {d: e for d, e in self._lanes.items() if e[0] != lane_id}


credentials = CredentialCache()


async def current_lane(request: Request, engine: Annotated[Engine, Depends(get_engine)]) -> str:
    """The lane whose credential this request carries (``Authorization: Bearer ...``)."""
    scheme, _, credential = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential:
        raise HTTPException(
            401,
            "lane credential missing: send 'Authorization: Bearer <credential>' "
            "(a lane gets one by enrolling at /api/v1/enrol)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    lane_id = credentials.cached(credential.strip())
    if lane_id is None:
        lane_id = await asyncio.to_thread(credentials.lane_for, engine, credential.strip())
    if lane_id is None:
        raise HTTPException(
            401, "lane credential not recognised or retired", {"WWW-Authenticate": "Bearer"}
        )
    return lane_id
