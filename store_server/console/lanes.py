"""Console: lane health from heartbeats, enrolment tokens for new lanes, retiring a lane."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from laneguard.signing import key_id
from product_db.models import as_utc, utcnow
from store_server.auth import SignedIn, audit, check_csrf, current_user, require_admin
from store_server.console.templating import render
from store_server.deps import get_engine
from store_server.lanes import EnrolmentError, create_enrolment_token, lane_state, retire
from store_server.models import Lane, LaneHealth

router = APIRouter(include_in_schema=False)


@router.get("/lanes", response_class=HTMLResponse)
def lanes_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    return _lanes(request, user, engine)


def _lanes(
    request: Request,
    user: SignedIn,
    engine: Engine,
    token: tuple[str, str] | None = None,
    error: str | None = None,
) -> Response:
    now = utcnow()
    with Session(engine) as session:
        lanes = {lane.lane_id: lane for lane in session.exec(select(Lane))}
        health = {h.lane_id: h for h in session.exec(select(LaneHealth))}
    rows = []
    for lane_id in sorted(set(lanes) | set(health)):
        beat = health.get(lane_id)
        seen = as_utc(beat.last_seen) if beat else None
        age = (now - seen).total_seconds() if seen else None
        rows.append(
            {
                "lane_id": lane_id,
                "lane": lanes.get(lane_id),
                "health": beat,
                "age_s": age,
                "state": lane_state(beat, now),
            }
        )
    chain = request.app.state.chain
    return render(
        request,
        "lanes.html",
        user,
        rows=rows,
        token=token,
        error=error,
        chain=chain.state() if chain is not None else None,
    )


@router.post("/lanes/enrolment-tokens", response_class=HTMLResponse)
def new_enrolment_token(
    request: Request,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    lane_id: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(max_length=120)] = "",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    check_csrf(user, csrf_token)
    try:
        with Session(engine) as session:
            token = create_enrolment_token(
                session,
                lane_id.strip(),
                name.strip(),
                user.username,
                store_key_id=key_id(request.app.state.signing_key.public_key()),
            )
            audit(session, user.username, "lane.token_created", lane_id)
            session.commit()
    except EnrolmentError as error:
        return _lanes(request, user, engine, error=str(error))
    return _lanes(request, user, engine, token=(lane_id.strip(), token))


@router.post("/lanes/{lane_id}/retire")
def retire_lane(
    lane_id: str,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    check_csrf(user, csrf_token)
    with Session(engine) as session:
        try:
            retire(session, lane_id)
        except EnrolmentError as error:
            return Response(str(error), status_code=404)
        audit(session, user.username, "lane.retired", lane_id)
        session.commit()
    return RedirectResponse("/lanes", status_code=303)
