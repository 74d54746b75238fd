"""Console: the chain's releases, the rollout in progress wave by wave, starting one with a
canary store and halting it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hq_server.models import ChainRelease, ChainRollout, Store, StoreStatus
from hq_server.releases import ChainRolloutError, active_chain_rollout, halt, start_chain_rollout
from store_server.auth import SignedIn, check_csrf, current_user, require_admin
from store_server.console.templating import DATABASE_INT_MAX, render
from store_server.deps import get_engine

router = APIRouter(include_in_schema=False)


@router.get("/releases", response_class=HTMLResponse)
def releases_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    """Any signed-in HQ user; starting and halting are IT admins'."""
    return _page(request, user, engine)


def _page(request: Request, user: SignedIn, engine: Engine, error: str | None = None) -> Response:
    with Session(engine) as session:
        releases = list(session.exec(select(ChainRelease).order_by(col(ChainRelease.id).desc())))
        rollouts = list(session.exec(select(ChainRollout).order_by(col(ChainRollout.id).desc())))
        stores = list(session.exec(select(Store.store_id).where(Store.active == True)))  # noqa: E712
        current = active_chain_rollout(session)
        active: dict[str, Any] | None = None
        if current is not None:
            release = session.get(ChainRelease, current.release_id)
            progress = {}
            for status in session.exec(select(StoreStatus)):
                state = status.rollout or {}
                if release and status.production_sha256 == release.sha256:
                    progress[status.store_id] = "running it"
                elif release and state.get("sha256") == release.sha256:
                    progress[status.store_id] = f"lanes: {state.get('state')}"
            active = {
                "rollout": current,
                "version": release.version if release else "?",
                "progress": progress,
            }
    versions = {r.id: r.version for r in releases}
    return render(
        request,
        "releases.html",
        user,
        releases=releases,
        rollouts=rollouts,
        stores=sorted(stores),
        active=active,
        versions=versions,
        error=error,
    )


@router.post("/releases/{release_id}/rollout", response_class=HTMLResponse)
def start(
    release_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    request: Request,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    canary: Annotated[str, Form(max_length=48)],
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """IT admins only: the canary store first, then half the chain, then all of it."""
    check_csrf(user, csrf_token)
    with Session(engine) as session:
        try:
            start_chain_rollout(
                session,
                request.app.state.outbox,
                release_id,
                [canary],
                user.username,
                soak_s=request.app.state.settings.wave_soak_s,
                store_soak_s=request.app.state.settings.store_soak_s,
            )
        except ChainRolloutError as error:
            return _page(request, user, engine, error=str(error))
        session.commit()
    request.app.state.link.wake()
    return RedirectResponse("/releases", status_code=303)


@router.post("/releases/rollouts/{rollout_id}/halt")
def halt_rollout(
    rollout_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    request: Request,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    reason: Annotated[str, Form(max_length=200)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """IT admins only: every store ordered so far goes back."""
    check_csrf(user, csrf_token)
    with Session(engine) as session:
        rollout = session.get(ChainRollout, rollout_id)
        if rollout is None or rollout.state not in ("running", "paused"):
            return Response(f"no rollout {rollout_id} in progress", status_code=404)
        halt(
            session,
            request.app.state.outbox,
            rollout,
            user.username,
            reason.strip() or f"halted by {user.username}",
        )
        session.commit()
    request.app.state.link.wake()
    return RedirectResponse("/releases", status_code=303)
