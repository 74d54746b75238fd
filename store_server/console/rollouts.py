"""Console: published bundles and their staged rollouts (IT admins start, pause, promote and
roll back; every role can see where a rollout stands and why it stopped)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from store_server.auth import SignedIn
from store_server.console.templating import DATABASE_INT_MAX, render
from store_server.deps import CurrentUser, EngineDep, FormAdmin
from store_server.models import AuditEntry, BundleRelease, Lane, Rollout
from store_server.rollouts import (
    HealthLimits,
    RolloutError,
    active_rollout,
    pause,
    production,
    promote,
    roll_back,
    stage_health,
    start_rollout,
)

router = APIRouter(include_in_schema=False)


@router.get("/rollouts", response_class=HTMLResponse)
def rollouts_page(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
) -> Response:
    return _page(request, user, engine)


def _page(request: Request, user: SignedIn, engine: Engine, error: str | None = None) -> Response:
    with Session(engine) as session:
        releases = list(session.exec(select(BundleRelease).order_by(col(BundleRelease.id).desc())))
        rollouts = list(session.exec(select(Rollout).order_by(col(Rollout.id).desc()).limit(20)))
        active = active_rollout(session)
        health = stage_health(session, active, HealthLimits()) if active is not None else None
        lanes = list(session.exec(select(Lane.lane_id).where(Lane.active).order_by(Lane.lane_id)))
        current = production(session)
        training = list(
            session.exec(
                select(AuditEntry)
                .where(col(AuditEntry.action).startswith("training."))
                .order_by(col(AuditEntry.id).desc())
                .limit(10)
            )
        )
    by_id = {r.id: r for r in releases}
    return render(
        request,
        "rollouts.html",
        user,
        releases=releases,
        rollouts=rollouts,
        by_id=by_id,
        active=active,
        health=health,
        lanes=lanes,
        production=current,
        error=error,
        training=training,
    )


@router.post("/rollouts", response_class=HTMLResponse)
def new_rollout(
    request: Request,
    user: FormAdmin,
    engine: EngineDep,
    release_id: Annotated[int, Form(ge=1, le=DATABASE_INT_MAX)],
    canary: Annotated[list[str], Form(max_length=64)],
    shares: Annotated[str, Form(max_length=64)] = "50,100",
    soak_minutes: Annotated[float, Form(ge=0, le=10_080)] = 30.0,
) -> Response:
    try:
        stages = [float(part) / 100 for part in shares.replace(" ", "").split(",") if part]
    except ValueError:
        return _page(request, user, engine, f"stages: {shares!r} is not a list of percentages")
    try:
        with Session(engine) as session:
            start_rollout(session, release_id, canary, user.username, stages, soak_minutes * 60)
            session.commit()
    except RolloutError as error:
        return _page(request, user, engine, str(error))
    return RedirectResponse("/rollouts", status_code=303)


@router.post("/rollouts/{rollout_id}/{action}", response_class=HTMLResponse)
def change_rollout(
    request: Request,
    rollout_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    action: str,
    user: FormAdmin,
    engine: EngineDep,
    reason: Annotated[str, Form(max_length=400)] = "",
) -> Response:
    """pause, resume, promote or rollback."""
    try:
        with Session(engine) as session:
            rollout = session.get(Rollout, rollout_id)
            if rollout is None:
                raise RolloutError(f"no rollout {rollout_id}")
            if action in ("pause", "resume"):
                pause(session, rollout, user.username, paused=action == "pause")
            elif action == "promote":
                promote(session, rollout, user.username)
            elif action == "rollback":
                roll_back(
                    session,
                    rollout,
                    user.username,
                    f"rolled back by {user.username}" + (f": {reason}" if reason else ""),
                )
            else:
                raise RolloutError(f"unknown action {action!r}")
            session.commit()
    except RolloutError as error:
        return _page(request, user, engine, str(error))
    return RedirectResponse("/rollouts", status_code=303)
