"""The console's forms fuzzed with schemathesis: every POST page of the console, described as
OpenAPI (the console keeps its pages out of the API schema, so the test describes them), sent
by a signed-in IT admin with a valid CSRF token and by a stranger; never a 5xx, and a stranger
never gets past the sign-in or CSRF check (a form body that does not parse is answered 400
before that: the server-wide cap bounds what is read, and nothing is acted on)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from store_server.app import create_app
from store_server.auth import SESSION_COOKIE, create_user
from store_server.console import PAGES
from store_server.db import migrate
from store_server.settings import StoreSettings

PASSWORD = "fuzzing the console 24"
_root = Path(tempfile.mkdtemp(prefix="laneguard-console-schemathesis-"))
_url = f"sqlite:///{_root / 'store.sqlite3'}"
_engine = make_engine(_url)
migrate(_engine)
import_records(_engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
create_user(_engine, "ivan", PASSWORD, "it_admin")
_engine.dispose()
app = create_app(StoreSettings(database_url=_url, data_dir=_root, discovery_port=0))


def _console_forms() -> dict[str, Any]:
    """OpenAPI for the console's POST routes (their own include_in_schema is off)."""
    routes = [
        route
        for module in PAGES
        for route in module.router.routes
        if isinstance(route, APIRoute) and "POST" in route.methods and route.path != "/logout"
    ]
    shown = [route.include_in_schema for route in routes]
    try:
        for route in routes:
            route.include_in_schema = True
        return get_openapi(title="LaneGuard console forms", version="1", routes=routes)
    finally:
        for route, was in zip(routes, shown):
            route.include_in_schema = was


with TestClient(app) as _client:
    _login = _client.get("/login").text
    _csrf = re.search(r'name="login_csrf" value="([^"]+)"', _login).group(1)  # type: ignore[union-attr]
    _client.post(
        "/login",
        data={"username": "ivan", "password": PASSWORD, "login_csrf": _csrf},
        follow_redirects=False,
    )
    SESSION = _client.cookies[SESSION_COOKIE]
    CSRF = re.search(r'name="csrf_token" value="([^"]+)"', _client.get("/lanes").text).group(1)  # type: ignore[union-attr]

schema = schemathesis.openapi.from_dict(_console_forms())
schema.app = app  # type: ignore[attr-defined]
FUZZ = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@schema.parametrize()
@FUZZ
def test_console_forms_never_fail_for_a_signed_in_admin(case: schemathesis.Case) -> None:
    if isinstance(case.body, dict) and "csrf_token" in case.body:
        case.body["csrf_token"] = CSRF
    with TestClient(app) as client:
        client.cookies.set(SESSION_COOKIE, SESSION)
        response = case.call(session=client)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )


@schema.parametrize()
@FUZZ
def test_a_stranger_never_gets_past_sign_in_or_csrf(case: schemathesis.Case) -> None:
    if case.formatted_path == "/login":
        return  # the sign-in form itself is for strangers
    with TestClient(app, follow_redirects=False) as client:
        response = case.call(session=client)
    if response.status_code == 303 or "<title>Sign in" in response.text:
        return  # a page (not a form) asked for: it sent the stranger to sign in first
    assert response.status_code in (400, 401, 403, 404, 405, 413, 415, 422), (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
