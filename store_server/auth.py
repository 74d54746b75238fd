"""Console users, their sessions and CSRF tokens, and the audit log.

Passwords are argon2id hashes. A signed-in browser holds a random session token in an
HttpOnly, SameSite=Strict cookie; the database keeps only its SHA-256, so a copy of the
database signs no one in. Every form and every state-changing request from the console's own
scripts carries the session's CSRF token, checked in constant time. Lane credentials are a
separate thing (store_server.lanes): a lane can never act as a user, nor a user as a lane.

Sign-in is throttled per account and per client address (each failure past the first few
doubles the wait before the next try; enough in a row lock it for 15 minutes, audited), a
password must be long and not guessable (zxcvbn's estimate, which knows the common passwords,
names and keyboard patterns), and a session idle for IDLE_MINUTES ends. Every audit row carries
the client address of the request that caused it ("cli" for the server's command line).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, HTTPException, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from zxcvbn import zxcvbn

from product_db.errors import LaneGuardError
from product_db.models import as_utc, utcnow
from store_server.app_state import get_engine
from store_server.models import AuditEntry, ConsoleSession, SignInThrottle, User

Role = Literal["manager", "it_admin"]
ROLES: tuple[Role, ...] = ("manager", "it_admin")
SESSION_COOKIE = "lg_session"
LOGIN_CSRF_COOKIE = "lg_login_csrf"
SESSION_HOURS = 12
IDLE_MINUTES = 30
MIN_PASSWORD = 10
MIN_PASSWORD_SCORE = 3  # zxcvbn: 0 (top-10 common) .. 4 (very unguessable)
# (key prefix, failures before the wait starts doubling, failures that lock, lock length)
THROTTLES = (("user", 3, 10, timedelta(minutes=15)), ("addr", 5, 20, timedelta(minutes=15)))
MAX_WAIT_S = 60.0
# Wrong enrolment tokens, per address: (failures before waits, failures to a lock, lock).
ENROLMENT_THROTTLE = (5, 20, timedelta(minutes=15))
# The client address audit rows record: set per request by audit_client_middleware, "cli" by
# the server's commands; background work (rollouts, learning) is the server itself.
audit_client: ContextVar[str] = ContextVar("audit_client", default="server")
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("not a password anyone has")


class AuthError(LaneGuardError):
    """Not signed in, or not allowed: the console answers with the login page or 403."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UserAccountError(LaneGuardError, ValueError):
    """A user that cannot be created as asked (name taken, weak password, unknown role)."""


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def password_problem(username: str, password: str) -> str | None:
    """Why ``password`` will not do for ``username``, or None."""
    if len(password) < MIN_PASSWORD:
        return f"a password needs at least {MIN_PASSWORD} characters"
    if len(password) > 256:
        return "a password is at most 256 characters"
    estimate = zxcvbn(password[:100], user_inputs=[username])
    if estimate["score"] < MIN_PASSWORD_SCORE:
        warning = estimate["feedback"].get("warning") or "it is too easy to guess"
        return f"that password is too easy to guess ({warning.rstrip('.').lower()}); add words"
    return None


def create_user(
    engine: Engine, username: str, password: str, role: str, created_by: str = "cli"
) -> User:
    """A new console user; audited as ``created_by``'s action."""
    if role not in ROLES:
        raise UserAccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not username or len(username) > 64 or not username.isprintable():
        raise UserAccountError("a username is 1-64 printable characters")
    problem = password_problem(username, password)
    if problem is not None:
        raise UserAccountError(problem)
    with Session(engine) as session:
        if session.exec(select(User).where(User.username == username)).first() is not None:
            raise UserAccountError(f"user {username!r} already exists")
        user = User(username=username, password_hash=_hasher.hash(password), role=role)
        session.add(user)
        audit(session, created_by, "user.created", username, role=role)
        session.commit()
        session.refresh(user)
        return user


def _throttle_keys(username: str, address: str) -> list[tuple[str, int, int, timedelta]]:
    return [
        (f"{kind}:{value}"[:200], start, lock, lock_for)
        for (kind, start, lock, lock_for), value in zip(THROTTLES, (username, address))
    ]


def sign_in_wait_s(session: Session, username: str, address: str, now: datetime) -> float:
    """Seconds before this account may try again from this address (0: now)."""
    return max(
        (
            _wait_s(session, key, start, now)
            for key, start, _, _ in _throttle_keys(username, address)
        ),
        default=0.0,
    )


def record_sign_in_failure(session: Session, username: str, address: str, now: datetime) -> None:
    """Count a failed sign-in against the account and the address; lock (audited) at the
    limit. The caller commits."""
    for key, _start, lock, lock_for in _throttle_keys(username, address):
        _count_failure(session, key, lock, lock_for, now, username[:64], "login.locked")


def enrolment_wait_s(session: Session, address: str, now: datetime) -> float:
    """Seconds before this address may present an enrolment token again (0: now). Counted
    by address only: a count shared by everyone would let one client lock every lane out."""
    start, _lock, _for = ENROLMENT_THROTTLE
    return _wait_s(session, f"enrol:{address}"[:200], start, now)


def refuse_while_enrolment_throttled(session: Session, address: str, now: datetime) -> None:
    """429 with Retry-After while ``address`` must wait before presenting another token."""
    wait = enrolment_wait_s(session, address, now)
    if wait > 0:
        raise HTTPException(
            429,
            "too many refused enrolment tokens from this address; try again later",
            headers={"Retry-After": str(math.ceil(wait))},
        )


def record_enrolment_failure(session: Session, who: str, address: str, now: datetime) -> None:
    """A wrong, used or expired enrolment token from ``address``: audited, counted, locked
    (audited) at the limit. The caller commits."""
    _start, lock, lock_for = ENROLMENT_THROTTLE
    audit(session, who, "enrolment.refused", address[:200])
    _count_failure(session, f"enrol:{address}"[:200], lock, lock_for, now, who, "enrolment.locked")


def _wait_s(session: Session, key: str, start: int, now: datetime) -> float:
    record = session.get(SignInThrottle, key)
    if record is None:
        return 0.0
    if record.locked_until is not None and as_utc(record.locked_until) > now:
        return max(0.0, (as_utc(record.locked_until) - now).total_seconds())
    if record.failures >= start:
        backoff = min(MAX_WAIT_S, 2.0 ** (record.failures - start))
        ready = as_utc(record.last_failure_at) + timedelta(seconds=backoff)
        return max(0.0, (ready - now).total_seconds())
    return 0.0


def _count_failure(
    session: Session,
    key: str,
    lock: int,
    lock_for: timedelta,
    now: datetime,
    who: str,
    locked_action: str,
) -> None:
    record = session.get(SignInThrottle, key) or SignInThrottle(key=key)
    if record.locked_until is not None and as_utc(record.locked_until) <= now:
        record.failures, record.locked_until = 0, None  # a lock served starts afresh
    record.failures += 1
    record.last_failure_at = now
    if record.failures >= lock and record.locked_until is None:
        record.locked_until = now + lock_for
        audit(session, who, locked_action, key, failures=record.failures)
    session.add(record)


def clear_sign_in_failures(session: Session, username: str) -> None:
    """A right password: the account's count starts again (the address keeps its count)."""
    record = session.get(SignInThrottle, f"user:{username}"[:200])
    if record is not None:
        session.delete(record)


def authenticate(session: Session, username: str, password: str) -> User | None:
    """The active user with this name and password, or None (the same work either way)."""
    user = session.exec(select(User).where(User.username == username)).first()
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    return user if user is not None and user.active else None


def start_session(session: Session, user: User) -> str:
    """A new session for ``user``; returns the cookie's token (shown to no one else)."""
    assert user.id is not None
    token = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            token_sha256=sha256(token),
            user_id=user.id,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=utcnow() + timedelta(hours=SESSION_HOURS),
        )
    )
    return token


def end_session(session: Session, token: str) -> None:
    record = session.get(ConsoleSession, sha256(token))
    if record is not None:
        session.delete(record)


@dataclass(frozen=True)
class SignedIn:
    username: str
    role: Role
    csrf_token: str

    @property
    def is_admin(self) -> bool:
        return self.role == "it_admin"


def signed_in_user(engine: Engine, token: str | None) -> SignedIn | None:
    if not token:
        return None
    with Session(engine) as session:
        record = session.get(ConsoleSession, sha256(token))
        now = utcnow()
        if record is None or as_utc(record.expires_at) < now:
            return None
        idle = now - as_utc(record.last_seen_at)
        if idle > timedelta(minutes=IDLE_MINUTES):
            session.delete(record)
            session.commit()
            return None
        user = session.get(User, record.user_id)
        if user is None or not user.active:
            return None
        if idle > timedelta(minutes=1):  # not a write per request: once a minute is enough
            record.last_seen_at = now
            session.add(record)
            session.commit()
        role: Role = "it_admin" if user.role == "it_admin" else "manager"
        return SignedIn(user.username, role, record.csrf_token)


def current_user(request: Request, engine: Annotated[Engine, Depends(get_engine)]) -> SignedIn:
    user = signed_in_user(engine, request.cookies.get(SESSION_COOKIE))
    if user is None:
        raise AuthError(401, "sign in to use the console")
    return user


def require_admin(user: Annotated[SignedIn, Depends(current_user)]) -> SignedIn:
    if not user.is_admin:
        raise AuthError(403, "only an IT admin may do this")
    return user


def check_csrf(user: SignedIn, presented: str | None) -> None:
    if not presented or not hmac.compare_digest(presented, user.csrf_token):
        raise AuthError(403, "the form's security token is missing or stale: reload the page")


def audit(session: Session, username: str, action: str, target: str = "", **detail: Any) -> None:
    """Record a console action in the same database transaction as the action itself, with
    the address of the client that asked for it."""
    session.add(
        AuditEntry(
            username=username,
            action=action,
            target=target,
            detail=detail,
            client=audit_client.get()[:64],
        )
    )


class AuditClientMiddleware:
    """Sets audit_client to each HTTP request's client address while it is served (sync
    handlers run in a worker thread with a copy of this context, so they see it too)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = audit_client.set(client[0] if client else "unknown")
        try:
            await self.app(scope, receive, send)
        finally:
            audit_client.reset(token)
