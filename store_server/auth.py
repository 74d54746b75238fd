"""Console users, their sessions and CSRF tokens, and the audit log.

Passwords are argon2id hashes. A signed-in browser holds a random session token in an
HttpOnly, SameSite=Strict cookie; the database keeps only its SHA-256, so a copy of the
database signs no one in. Every form and every state-changing request from the console's own
scripts carries the session's CSRF token, checked in constant time. Lane credentials are a
separate thing (store_server.lanes): a lane can never act as a user, nor a user as a lane.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from product_db.errors import LaneGuardError
from product_db.models import as_utc, utcnow
from store_server.deps import get_engine
from store_server.models import AuditEntry, ConsoleSession, User

Role = Literal["manager", "it_admin"]
ROLES: tuple[Role, ...] = ("manager", "it_admin")
SESSION_COOKIE = "lg_session"
LOGIN_CSRF_COOKIE = "lg_login_csrf"
SESSION_HOURS = 12
MIN_PASSWORD = 8
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


def create_user(engine: Engine, username: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise UserAccountError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if not username or len(username) > 64 or not username.isprintable():
        raise UserAccountError("a username is 1-64 printable characters")
    if len(password) < MIN_PASSWORD:
        raise UserAccountError(f"a password needs at least {MIN_PASSWORD} characters")
    with Session(engine) as session:
        if session.exec(select(User).where(User.username == username)).first() is not None:
            raise UserAccountError(f"user {username!r} already exists")
        user = User(username=username, password_hash=_hasher.hash(password), role=role)
        session.add(user)
        session.commit()
        session.refresh(user)
        return user


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
        if record is None or as_utc(record.expires_at) < utcnow():
            return None
        user = session.get(User, record.user_id)
        if user is None or not user.active:
            return None
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
    """Record a console action in the same database transaction as the action itself."""
    session.add(AuditEntry(username=username, action=action, target=target, detail=detail))
