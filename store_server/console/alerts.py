"""Console: the alert feed (live over a websocket), alert review with evidence, media."""

from __future__ import annotations

import asyncio
import time
from asyncio import FIRST_COMPLETED
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from product_db.models import utcnow
from store_server.analytics import outcome_of
from store_server.auth import SESSION_COOKIE, SignedIn, audit
from store_server.auth import signed_in_user as session_user
from store_server.console.templating import error_page, render
from store_server.deps import CurrentUser, EngineDep, FormUser, MediaDep, Services, SettingsDep
from store_server.media import EvidenceImageError, media_type
from store_server.models import AlertClip, AlertRecord, TransactionRecord
from store_server.products import describe

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
SESSION_RECHECK_S = 2.0  # a signed-out console sees at most this long of alerts
REVIEWS = {
    "confirmed_loss": "Confirmed: the item left unpaid",
    "recovered": "Recovered: paid for or left in store",
    "false_alarm": "False alarm: nothing was wrong",
}
STATUSES = ("open", "resolved", "withdrawn")
# How the lane closed an alert, in words, for closings that say nothing was lost.
LANE_CLOSINGS = {
    "rescanned": "rescanned: the item was scanned after the alert",
    "not_an_item": "not an item: the camera counted something that is not merchandise",
    "customer_declined": "customer declined: the customer left the item in the store",
}


@router.get("/alerts", response_class=HTMLResponse)
def alerts_page(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    status: Annotated[str, Query(max_length=12)] = "",
    lane: Annotated[str, Query(max_length=64)] = "",
    alert_type: Annotated[str, Query(max_length=24)] = "",
    unreviewed: bool = False,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    query = select(AlertRecord).order_by(col(AlertRecord.raised_at).desc())
    if status:
        query = query.where(AlertRecord.status == status)
    if lane:
        query = query.where(AlertRecord.lane_id == lane)
    if alert_type:
        query = query.where(AlertRecord.alert_type == alert_type)
    if unreviewed:
        query = query.where(col(AlertRecord.review).is_(None))
    with Session(engine) as session:
        rows = list(session.exec(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
        lanes = sorted(set(session.exec(select(AlertRecord.lane_id).distinct())))
        products = describe(session, [c for a in rows for c in (a.seen_code, a.scanned_code)])
    return render(
        request,
        "alerts.html",
        user,
        alerts=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        page=page,
        filters={"status": status, "lane": lane, "alert_type": alert_type},
        unreviewed=unreviewed,
        lanes=lanes,
        statuses=STATUSES,
        outcome_of=outcome_of,
        products=products,
    )


@router.get("/alerts/{alert_id}", response_class=HTMLResponse)
def alert_page(
    alert_id: str,
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    return _alert_page(request, user, engine, settings.retention_days, alert_id)


def _alert_page(
    request: Request,
    user: SignedIn,
    engine: Engine,
    retention_days: int,
    alert_id: str,
    status_code: int = 200,
    **extra: object,
) -> Response:
    """The alert with its evidence; ``extra`` carries a review waiting for confirmation."""
    with Session(engine) as session:
        alert = session.get(AlertRecord, alert_id)
        if alert is None:
            return error_page(request, user, 404, f"no alert {alert_id!r}")
        transaction = session.exec(
            select(TransactionRecord).where(
                TransactionRecord.lane_id == alert.lane_id,
                TransactionRecord.transaction_id == alert.transaction_id,
            )
        ).first()
        guesses = [str(g["code"]) for g in alert.guesses or []] if not alert.seen_code else []
        products = describe(session, [alert.seen_code, alert.scanned_code, *guesses])
        clip = session.get(AlertClip, (alert.lane_id, alert.alert_id))
    return render(
        request,
        "alert.html",
        user,
        status_code,
        alert=alert,
        clip=clip,
        retention_days=retention_days,
        transaction=transaction,
        products=products,
        reviews=REVIEWS,
        outcome=outcome_of(alert),
        **extra,
    )


def contradiction(alert: AlertRecord, review: str) -> str | None:
    """Why ``review`` goes against what happened at the lane, or None. Only a confirmed loss
    can: the lane's own record says the item was paid for, put back or never an item."""
    if review != "confirmed_loss":
        return None
    if alert.status == "withdrawn":
        return (
            "The lane withdrew this alert at its final check: the item was paid for by the "
            "end of the transaction."
        )
    closed_as = LANE_CLOSINGS.get(alert.resolution or "")
    if closed_as is None:
        return None
    return f"At the lane this alert was closed as {closed_as}."


@router.post("/alerts/{alert_id}/review")
def review_alert(
    request: Request,
    alert_id: str,
    user: FormUser,
    services: Services,
    review: Annotated[str, Form(max_length=16)],
    note: Annotated[str, Form(max_length=500)] = "",
    against_the_lane: Annotated[bool, Form()] = False,
) -> Response:
    """Record a manager's review. One that contradicts the lane's own closing is saved only
    when sent again with ``against_the_lane`` (the page asks first)."""
    engine = services.engine
    if review not in REVIEWS:
        return error_page(request, user, 422, f"review must be one of {', '.join(REVIEWS)}")
    with Session(engine) as session:
        alert = session.get(AlertRecord, alert_id)
        if alert is None:
            return error_page(request, user, 404, f"no alert {alert_id!r}")
        why = contradiction(alert, review)
    if why is not None and not against_the_lane:
        return _alert_page(
            request,
            user,
            engine,
            services.settings.retention_days,
            alert_id,
            409,
            pending_review=review,
            pending_note=note,
            contradiction=why,
        )
    with Session(engine) as session:
        alert = session.get(AlertRecord, alert_id)
        if alert is None:
            return error_page(request, user, 404, f"no alert {alert_id!r}")
        alert.review, alert.review_note = review, note.strip() or None
        alert.reviewed_by, alert.reviewed_at = user.username, utcnow()
        session.add(alert)
        audit(
            session,
            user.username,
            "alert.review",
            alert_id,
            review=review,
            note=note,
            **({"against_the_lane": why} if why else {}),
        )
        session.commit()
        session.refresh(alert)
    if services.events is not None:
        services.events.alert_reviewed(alert)
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


@router.post("/alerts/{alert_id}/keep")
def keep_evidence(
    request: Request,
    alert_id: str,
    user: FormUser,
    engine: EngineDep,
    keep: Annotated[bool, Form()],
) -> Response:
    """Keep an alert's crop and clip past the store's retention days (a confirmed loss, a
    dispute), or let them go again; audited either way."""
    with Session(engine) as session:
        alert = session.get(AlertRecord, alert_id)
        if alert is None:
            return error_page(request, user, 404, f"no alert {alert_id!r}")
        if alert.evidence_deleted_at is not None:
            return error_page(request, user, 409, "this alert's evidence was already deleted")
        alert.keep_evidence = keep
        session.add(alert)
        audit(
            session,
            user.username,
            "alert.keep_evidence" if keep else "alert.release_evidence",
            alert_id,
        )
        session.commit()
    return RedirectResponse(f"/alerts/{alert_id}", status_code=303)


@router.get("/media/{name}")
def media_file(
    name: str,
    request: Request,
    user: CurrentUser,
    media: MediaDep,
) -> Response:
    """Evidence and sample crops and alert clips, for signed-in users only (they show
    customers' items). Clips are served with byte ranges, which a browser's video player asks
    for."""
    try:
        path = media.path(name)
    except EvidenceImageError:
        return error_page(request, user, 404, "not a media name")
    if not path.is_file():
        return error_page(request, user, 404, "no such file")
    return FileResponse(path, media_type=media_type(name), headers={"Cache-Control": "private"})


@router.websocket("/ws/alerts")
async def live_alerts(websocket: WebSocket, services: Services) -> None:
    """Every alert stored from now on, as JSON, to a signed-in console on this site.

    The session is checked again at least every ``SESSION_RECHECK_S`` and before any alert
    after that: a console whose user signed out, timed out or was deactivated is closed
    (4401) instead of being shown what it may no longer see."""
    origin = websocket.headers.get("origin")
    host = websocket.headers.get("host", "")
    engine = services.engine
    cookie = websocket.cookies.get(SESSION_COOKIE)
    user = await asyncio.to_thread(session_user, engine, cookie)
    if user is None or (origin is not None and origin.split("://", 1)[-1] != host):
        await websocket.close(code=4401, reason="sign in to the console first")
        return
    feed, metrics = services.feed, services.metrics
    await websocket.accept()
    async with feed.subscribe() as queue:
        await websocket.send_json({"type": "hello", "user": user.username})
        receiver = asyncio.create_task(_until_closed(websocket))
        getter: asyncio.Task[Any] | None = None
        checked = time.monotonic()
        try:
            while not receiver.done():
                getter = getter or asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, receiver}, timeout=SESSION_RECHECK_S, return_when=FIRST_COMPLETED
                )
                if receiver in done:
                    break
                if time.monotonic() - checked >= SESSION_RECHECK_S:
                    if await asyncio.to_thread(session_user, engine, cookie) is None:
                        await websocket.close(code=4401, reason="the session has ended")
                        break
                    checked = time.monotonic()
                if getter in done:
                    await websocket.send_json(metrics.sent_to_console(getter.result()))
                    getter = None
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            receiver.cancel()
            if getter is not None:
                getter.cancel()


async def _until_closed(websocket: WebSocket) -> None:
    try:
        while True:
            await websocket.receive_text()
    except WebSocketDisconnect:
        return
