"""Shared rendering for the console pages: one Jinja environment, and the context every page
needs (store name, currency, who is signed in, the CSRF token for its forms)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import pass_context

from product_db.models import as_utc
from product_db.money import format_price
from store_server.app_state import console_services, templates_for, time_zone_of
from store_server.auth import SignedIn

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# The largest id a row can have (SQLite and PostgreSQL integers): path ids above it are 422s,
# not database errors.
DATABASE_INT_MAX = 2**63 - 1


@pass_context
def _when(context: Any, moment: datetime | None) -> str:
    """A moment on the store's clock (the page's ``time_zone``; UTC where a page has none)."""
    if moment is None:
        return "–"
    zone = context.get("time_zone") or timezone.utc
    return as_utc(moment).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _money(minor: int | None, currency: str) -> str:
    return "–" if minor is None else f"{format_price(minor, currency)} {currency}"


# The recogniser's words for how sure it was, and how a final identity was decided, as a
# manager reads them.
BAND_WORDS = {"trusted": "recognised", "of_interest": "unsure", "unknown": "not recognised"}
DECIDED_WORDS = {
    "vision": "camera only",
    "scan (agree)": "scanned, the camera agrees",
    "scan (unsure)": "scanned, the camera was unsure",
    "scan (disagree)": "scanned, the camera disagrees",
}
SAMPLE_REASON_WORDS = {"honest": "honest transaction", "of_interest": "camera unsure"}


def _words(table: dict[str, str]) -> Any:
    return lambda value: table.get(str(value), str(value).replace("_", " ")) if value else ""


def make_templates(*before: Path) -> Any:
    """The console's templates, with the folders ``before`` searched first (HQ's pages, and
    its base page in place of the store's)."""
    from fastapi.templating import Jinja2Templates

    templates = Jinja2Templates(directory=[*before, HERE / "templates"])
    templates.env.filters["price"] = lambda minor, currency: format_price(minor, currency)
    templates.env.filters["money"] = _money
    templates.env.filters["when"] = _when
    templates.env.filters["band_words"] = _words(BAND_WORDS)
    templates.env.filters["decided_words"] = _words(DECIDED_WORDS)
    templates.env.filters["reason_words"] = _words(SAMPLE_REASON_WORDS)
    return templates


templates = make_templates()


def render(
    request: Request,
    template: str,
    user: SignedIn | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    settings = console_services(request).settings  # or HQ's, which has the same names
    response: HTMLResponse = templates_for(request, templates).TemplateResponse(
        request,
        template,
        {
            "store_name": settings.store_name,
            "currency": settings.currency,
            "time_zone": time_zone_of(request),
            "user": user,
            "csrf_token": user.csrf_token if user else "",
            **context,
        },
        status_code=status_code,
    )
    return response


# What a console error page is headed with, by status (404 has its own page, not_found.html).
ERROR_TITLES = {
    400: "Not understood",
    405: "Not possible here",
    409: "Not done",
    413: "Too large",
    422: "Not accepted",
}


def error_page(
    request: Request, user: SignedIn | None, status_code: int, message: str
) -> HTMLResponse:
    """The console's one way to answer with an error: a page in the console's frame (the
    API answers JSON instead). ``user`` keeps the signed-in person's navigation on it."""
    if status_code == 404:
        return render(request, "not_found.html", user, 404, message=message)
    title = ERROR_TITLES.get(status_code, "Something went wrong")
    return render(request, "error.html", user, status_code, title=title, message=message)
