"""Real uvicorn servers for tests (the product's own helper, re-exported under test names)."""

from __future__ import annotations

import re

import httpx

from laneguard.serving import free_port
from laneguard.serving import serve_in_thread as serve

__all__ = ["enrol", "enrolment_token", "free_port", "serve", "sign_in"]


def enrolment_token(database_url: str, lane_id: str, store_key_id: str | None = None) -> str:
    """A one-time enrolment token for ``lane_id`` in the store database (migrated first);
    with ``store_key_id``, one that names its store as the console's tokens do."""
    from product_db.db import make_engine
    from store_server.db import migrate
    from store_server.lanes import issue_enrolment_token

    engine = make_engine(database_url)
    migrate(engine)
    token = issue_enrolment_token(engine, lane_id, created_by="test", store_key_id=store_key_id)
    engine.dispose()
    return token


def enrol(base_url: str, database_url: str, lane_id: str) -> str:
    """Enrol ``lane_id`` through the real API; returns its credential."""
    token = enrolment_token(database_url, lane_id)
    reply = httpx.post(f"{base_url}/api/v1/enrol", json={"token": token}, timeout=10)
    reply.raise_for_status()
    credential: str = reply.json()["credential"]
    return credential


def sign_in(client: httpx.Client, username: str, password: str) -> str:
    """Sign in through the login form like a browser; returns the session's CSRF token."""
    form = client.get("/login")
    login_csrf = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert login_csrf is not None, form.text[:500]
    reply = client.post(
        "/login",
        data={"username": username, "password": password, "login_csrf": login_csrf.group(1)},
    )
    assert reply.status_code in (200, 303), reply.text[:500]
    page = client.get("/alerts")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None, "not signed in"
    return token.group(1)


def deliver(base: str, credential: str, *messages: object) -> None:
    """Send lane messages through the real ingest API as the lane whose credential this is;
    every one must be taken."""
    from tests.helpers.messages import as_json

    reply = httpx.post(
        f"{base}/api/v1/ingest",
        json={"messages": [as_json(m) for m in messages]},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=10,
    )
    assert reply.status_code == 200 and reply.json()["rejected"] == 0, reply.text
