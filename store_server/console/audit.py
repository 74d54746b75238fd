"""Console: the audit log of every manager and IT action."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from store_server.console.audit_words import audit_sentence
from store_server.console.templating import render
from store_server.deps import AdminUser, EngineDep, SettingsDep
from store_server.models import AuditEntry
from store_server.products import describe

router = APIRouter(include_in_schema=False)


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    user: AdminUser,
    engine: EngineDep,
    settings: SettingsDep,
    who: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(200)
    if who:
        query = query.where(AuditEntry.username == who)
    with Session(engine) as session:
        entries = list(session.exec(query))
        codes = [
            str((e.detail or {}).get("code") or e.target)
            for e in entries
            if e.action.startswith(("catalog.", "gallery."))
        ]
        products = describe(session, codes, pictures=False)
    sentences = [
        audit_sentence(e.action, e.target, e.detail, settings.currency, products) for e in entries
    ]
    return render(
        request, "audit.html", user, entries=list(zip(entries, sentences, strict=True)), who=who
    )
