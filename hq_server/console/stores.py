"""Console: every store's health, its lanes and the bundle each runs; adding a store (a
one-time enrolment token) and retiring one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hq_server.models import ChainRelease, PooledSample, Store, StoreStatus
from hq_server.settings import HqSettings
from hq_server.stores import StoreEnrolmentError, add_store, retire_store
from product_db.models import as_utc, utcnow
from store_server.auth import SignedIn, check_csrf, current_user, require_admin
from store_server.console.templating import render
from store_server.deps import get_engine

router = APIRouter(include_in_schema=False)


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/stores", status_code=303)


def store_state(status: StoreStatus | None, stale_s: float) -> str:
    """ "online", "lanes down" (any lane not ok), "offline" (silent over ``stale_s``) or
    "never heard"."""
    if status is None:
        return "never heard"
    if (utcnow() - as_utc(status.received_at)).total_seconds() > stale_s:
        return "offline"
    return "online" if all(lane.get("state") == "ok" for lane in status.lanes) else "lanes down"


@router.get("/stores", response_class=HTMLResponse)
def stores_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    """Any signed-in HQ user."""
    return _stores(request, user, engine)


def _stores(
    request: Request,
    user: SignedIn,
    engine: Engine,
    token: tuple[str, str] | None = None,
    error: str | None = None,
) -> Response:
    settings: HqSettings = request.app.state.settings
    with Session(engine) as session:
        stores = list(session.exec(select(Store).order_by(col(Store.store_id))))
        statuses = {s.store_id: s for s in session.exec(select(StoreStatus))}
        samples = dict(
            session.exec(
                select(PooledSample.store_id, func.count()).group_by(col(PooledSample.store_id))
            ).all()
        )
        versions = {r.sha256: r.version for r in session.exec(select(ChainRelease))}
    rows = []
    for store in stores:
        status = statuses.get(store.store_id)
        rows.append(
            {
                "store": store,
                "status": status,
                "state": store_state(status, settings.stale_s)
                if store.active
                else ("retired" if store.enrolled_at else "awaiting enrolment"),
                "lanes_ok": sum(1 for lane in status.lanes if lane.get("state") == "ok")
                if status
                else 0,
                "production": versions.get(status.production_sha256 or "", status.production_sha256)
                if status and status.production_sha256
                else None,
                "samples": samples.get(store.store_id, 0),
            }
        )
    return render(
        request,
        "stores.html",
        user,
        rows=rows,
        token=token,
        error=error,
        link=request.app.state.link.stats,
        outbox_depth=request.app.state.outbox.depth(),
        hq_url=settings.public_url or f"http://{settings.host}:{settings.port}",
    )


@router.post("/stores", response_class=HTMLResponse)
def create_store(
    request: Request,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    store_id: Annotated[str, Form(max_length=48)],
    name: Annotated[str, Form(max_length=120)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """IT admins only: a one-time enrolment token, shown once."""
    check_csrf(user, csrf_token)
    with Session(engine) as session:
        try:
            token = add_store(session, store_id.strip(), name.strip(), user.username)
        except StoreEnrolmentError as error:
            return _stores(request, user, engine, error=str(error))
        session.commit()
    return _stores(request, user, engine, token=(store_id.strip(), token))


@router.post("/stores/{store_id}/retire")
def retire(
    store_id: str,
    request: Request,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """IT admins only: HQ stops taking the store's messages and its credential, and the
    broker refuses its users from the keeper's next step (run now)."""
    check_csrf(user, csrf_token)
    with Session(engine) as session:
        try:
            retire_store(session, store_id, user.username)
        except StoreEnrolmentError as error:
            return Response(str(error), status_code=404)
        session.commit()
    request.app.state.link.maintain_now()
    return RedirectResponse("/stores", status_code=303)
