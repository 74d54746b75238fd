"""Console: lane health from heartbeats, enrolment tokens for new lanes, retiring a lane."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session, select

from laneguard.signing import key_id
from product_db.models import as_utc, utcnow
from store_server.auth import SignedIn, audit
from store_server.console.templating import error_page, render
from store_server.deps import CurrentUser, EngineDep, FormAdmin, Services
from store_server.lanes import EnrolmentError, create_enrolment_token, lane_state, retire
from store_server.models import Lane, LaneHealth
from store_server.services import StoreServices

router = APIRouter(include_in_schema=False)


@router.get("/lanes", response_class=HTMLResponse)
def lanes_page(request: Request, user: CurrentUser, services: Services) -> Response:
    return _lanes(request, user, services)


def _lanes(
    request: Request,
    user: SignedIn,
    services: StoreServices,
    token: tuple[str, str] | None = None,
    error: str | None = None,
) -> Response:
    now = utcnow()
    with Session(services.engine) as session:
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
    chain = services.chain
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
    user: FormAdmin,
    services: Services,
    lane_id: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(max_length=120)] = "",
) -> Response:
    try:
        with Session(services.engine) as session:
            token = create_enrolment_token(
                session,
                lane_id.strip(),
                name.strip(),
                user.username,
                store_key_id=key_id(services.signing_key.public_key()),
            )
            audit(session, user.username, "lane.token_created", lane_id)
            session.commit()
    except EnrolmentError as error:
        return _lanes(request, user, services, error=str(error))
    return _lanes(request, user, services, token=(lane_id.strip(), token))


@router.post("/lanes/{lane_id}/retire")
def retire_lane(
    lane_id: str,
    request: Request,
    user: FormAdmin,
    engine: EngineDep,
) -> Response:
    with Session(engine) as session:
        try:
            retire(session, lane_id)
        except EnrolmentError as error:
            return error_page(request, user, 404, str(error))
        audit(session, user.username, "lane.retired", lane_id)
        session.commit()
    return RedirectResponse("/lanes", status_code=303)
