"""Signing in and out of the console."""

from __future__ import annotations

import hmac
import secrets
from math import ceil
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from product_db.models import utcnow
from store_server.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_HOURS,
    audit,
    authenticate,
    clear_sign_in_failures,
    end_session,
    record_sign_in_failure,
    sign_in_wait_s,
    start_session,
)
from store_server.console.templating import render
from store_server.deps import EngineDep, FormUser, HomePage

router = APIRouter(include_in_schema=False)


def _safe_next(target: str, home: str) -> str:
    """Only a path on this site: never an open redirect to somewhere else. Otherwise the
    app's home page (the store's alerts; HQ's stores)."""
    # "//host" and "/\\host" (which browsers read as "//host") lead off the site.
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return home


def _set_login_csrf(request: Request, response: Response, token: str) -> None:
    """The login form's CSRF cookie; like the session's, sent only over TLS once served so."""
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=3600,
    )


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, home: HomePage, next: str = "") -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, next=_safe_next(next, home), login_csrf=token)
    _set_login_csrf(request, response, token)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    engine: EngineDep,
    home: HomePage,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    login_csrf: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=300)] = "",
) -> Response:
    target = _safe_next(next, home)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie, login_csrf):
        return _login_again(request, target, "Your sign-in form expired. Please try again.", 403)
    address = request.client.host if request.client else "unknown"
    with Session(engine) as session:
        now = utcnow()
        wait = sign_in_wait_s(session, username, address, now)
        if wait > 0:  # trying again before the wait is over counts as a failure too
            audit(session, username[:64], "login.throttled", wait_s=round(wait, 1))
            record_sign_in_failure(session, username, address, now)
            session.commit()
            message = f"Too many failed sign-ins. Try again in {ceil(wait)} seconds."
            return _login_again(request, target, message, 429)
        user = authenticate(session, username, password)
        if user is None:
            audit(session, username[:64], "login.failed")
            record_sign_in_failure(session, username, address, now)
            session.commit()
            return _login_again(request, target, "Wrong user name or password.", 401)
        clear_sign_in_failures(session, user.username)
        token = start_session(session, user)
        audit(session, user.username, "login")
        session.commit()
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=SESSION_HOURS * 3600,
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


def _login_again(request: Request, target: str, error: str, status: int) -> Response:
    """The sign-in form again, with what went wrong; ``target`` is already a safe path."""
    token = secrets.token_urlsafe(24)
    response = render(
        request,
        "login.html",
        None,
        status_code=status,
        next=target,
        login_csrf=token,
        error=error,
    )
    _set_login_csrf(request, response, token)
    return response


@router.post("/logout")
def logout(request: Request, user: FormUser, engine: EngineDep) -> Response:
    with Session(engine) as session:
        end_session(session, request.cookies.get(SESSION_COOKIE, ""))
        audit(session, user.username, "logout")
        session.commit()
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response
