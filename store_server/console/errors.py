"""How the store app answers an error: a console page gets a page, the JSON API its JSON.

- Not signed in (AuthError 401) on a page asked for with GET: to the sign-in page, which
  comes back here after; any other AuthError (a role, a stale CSRF token): forbidden.html.
- An HTTP error or a request that does not validate on a console route, or on a path no route
  serves outside the API: templating.error_page (not_found.html for 404, error.html else),
  with the status FastAPI would have answered.
- The same on the JSON API (``/api/...``, ``/metrics``, ``/healthz``): FastAPI's own JSON.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exception_handlers import (
    http_exception_handler,
    request_validation_exception_handler,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from store_server.app_state import console_services
from store_server.auth import SESSION_COOKIE, AuthError, SignedIn, signed_in_user
from store_server.console.templating import error_page, render

JSON_PATHS = ("/api/", "/metrics", "/healthz")


def add_error_pages(app: FastAPI) -> None:
    app.add_exception_handler(AuthError, not_signed_in)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]


def not_signed_in(request: Request, error: AuthError) -> Response:
    if error.status == 401 and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    return render(request, "forbidden.html", None, error.status, message=str(error))


def is_page(request: Request) -> bool:
    """Whether the request was for a console page (its routes stay out of the API schema)
    rather than the JSON API."""
    route = request.scope.get("route")
    if isinstance(route, APIRoute):
        return not route.include_in_schema
    return not request.url.path.startswith(JSON_PATHS)


async def http_error(request: Request, error: StarletteHTTPException) -> Response:
    if not is_page(request):
        return await http_exception_handler(request, error)
    page = error_page(request, await _viewer(request), error.status_code, str(error.detail))
    page.headers.update(error.headers or {})
    return page


async def invalid_request(request: Request, error: RequestValidationError) -> Response:
    if not is_page(request):
        return await request_validation_exception_handler(request, error)
    problems = [
        f"{'.'.join(str(part) for part in problem['loc'][1:]) or 'form'}: {problem['msg']}"
        for problem in error.errors()[:5]
    ]
    return error_page(request, await _viewer(request), 422, "; ".join(problems))


async def _viewer(request: Request) -> SignedIn | None:
    """Who is looking at the error, so the page keeps their navigation (nobody: none)."""
    engine = console_services(request).engine
    return await run_in_threadpool(signed_in_user, engine, request.cookies.get(SESSION_COOKIE))
