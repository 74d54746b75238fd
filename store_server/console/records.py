"""Console: transaction history and search, analytics, lane health and enrolment, the
training-sample browser and the audit log."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import ColumnElement, String, cast, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from product_db.codes import InvalidCodeError, parse_code
from product_db.models import as_utc, utcnow
from store_server.analytics import compute
from store_server.auth import SignedIn, audit, check_csrf, current_user, require_admin
from store_server.console.templating import render
from store_server.deps import get_engine
from store_server.lanes import EnrolmentError, create_enrolment_token, retire
from store_server.learning import audit_sample, withdraw
from store_server.models import (
    AlertRecord,
    AuditEntry,
    Lane,
    LaneHealth,
    SampleRecord,
    TransactionRecord,
)

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
STALE_S = 30.0
SAMPLE_REVIEWS = ("pending", "confirmed", "relabelled", "rejected")


# -- transactions ------------------------------------------------------------------------------
@router.get("/transactions", response_class=HTMLResponse)
def transactions_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
    lane: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=64)] = "",
    day: Annotated[date | None, Query()] = None,
    flagged: bool = False,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """Newest first; ``q`` finds a transaction id or a product code seen or scanned in it."""
    query = select(TransactionRecord).order_by(col(TransactionRecord.ended_at).desc())
    if lane:
        query = query.where(TransactionRecord.lane_id == lane)
    if flagged:
        query = query.where(TransactionRecord.honest == False)  # noqa: E712
    if day is not None:
        start = datetime.combine(day, time.min, tzinfo=timezone.utc)
        query = query.where(
            col(TransactionRecord.ended_at) >= start,
            col(TransactionRecord.ended_at) < start + timedelta(days=1),
        )
    if q.strip():
        query = query.where(_matches(q.strip()))
    with Session(engine) as session:
        rows = list(session.exec(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
        lanes = sorted(set(session.exec(select(TransactionRecord.lane_id).distinct())))
    return render(
        request,
        "transactions.html",
        user,
        transactions=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        page=page,
        lanes=lanes,
        filters={"lane": lane, "q": q, "day": day.isoformat() if day else ""},
        flagged=flagged,
    )


def _matches(q: str) -> ColumnElement[bool]:
    """A product code matches transactions that saw or scanned it (its JSON string value,
    quotes included, so 4011 does not match 40110); anything else is a transaction id."""
    try:
        key = parse_code(q).key
    except InvalidCodeError:
        return col(TransactionRecord.transaction_id) == q
    quoted = f'"{key}"'
    return or_(
        col(TransactionRecord.transaction_id) == q,
        cast(TransactionRecord.seen, String).contains(quoted),
        cast(TransactionRecord.scanned, String).contains(quoted),
    )


@router.get("/transactions/{record_id}", response_class=HTMLResponse)
def transaction_page(
    record_id: int,
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
) -> Response:
    with Session(engine) as session:
        record = session.get(TransactionRecord, record_id)
        if record is None:
            return render(request, "not_found.html", user, 404, message="no such transaction")
        alerts = list(
            session.exec(
                select(AlertRecord).where(
                    AlertRecord.lane_id == record.lane_id,
                    AlertRecord.transaction_id == record.transaction_id,
                )
            )
        )
    return render(request, "transaction.html", user, tx=record, alerts=alerts)


# -- analytics ---------------------------------------------------------------------------------
@router.get("/analytics", response_class=HTMLResponse)
def analytics_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
    days: Annotated[int, Query(ge=1, le=366)] = 7,
) -> Response:
    numbers = compute(engine, days)
    hours = [(f"{h:02d}", numbers.per_hour.get(h, 0)) for h in range(24)]
    return render(
        request,
        "analytics.html",
        user,
        a=numbers,
        days=days,
        charts=[
            ("Alerts per lane", sorted(numbers.per_lane.items())),
            ("Alerts by type", numbers.per_type.most_common()),
            ("How alerts ended", numbers.outcomes.most_common()),
        ],
        hours=hours,
    )


# -- lanes -------------------------------------------------------------------------------------
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
                "state": _lane_state(beat, age),
            }
        )
    return render(request, "lanes.html", user, rows=rows, token=token, error=error)


def _lane_state(beat: LaneHealth | None, age_s: float | None) -> str:
    if beat is None or age_s is None:
        return "no heartbeat"
    if age_s > STALE_S:
        return "offline"
    return "ok" if beat.camera == "up" else "camera down"


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
            token = create_enrolment_token(session, lane_id.strip(), name.strip(), user.username)
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


# -- training samples --------------------------------------------------------------------------
@router.get("/samples", response_class=HTMLResponse)
def samples_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
    review: Annotated[str, Query(max_length=12)] = "pending",
    code: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    query = select(SampleRecord).order_by(col(SampleRecord.id).desc())
    if review:
        query = query.where(SampleRecord.review == review)
    if code:
        query = query.where(SampleRecord.code == code.strip())
    with Session(engine) as session:
        rows = list(session.exec(query.offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)))
    return render(
        request,
        "samples.html",
        user,
        learned=audit_sample(engine),
        samples=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        page=page,
        review=review,
        code=code,
        reviews=SAMPLE_REVIEWS,
    )


@router.post("/samples/{sample_id}/review", response_class=HTMLResponse)
def review_sample(
    sample_id: int,
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
    action: Annotated[str, Form(max_length=12)],
    label: Annotated[str, Form(max_length=64)] = "",
    back: Annotated[str, Form(max_length=300)] = "/samples",
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Confirm the sample's label, give it another product code, or reject it."""
    check_csrf(user, csrf_token)
    if action not in ("confirm", "relabel", "reject"):
        return Response("action must be confirm, relabel or reject", status_code=422)
    with Session(engine) as session:
        sample = session.get(SampleRecord, sample_id)
        if sample is None:
            return Response(f"no sample {sample_id}", status_code=404)
        if action == "relabel":
            try:
                sample.label = parse_code(label.strip()).key
            except InvalidCodeError as error:
                return Response(f"relabel: {error}", status_code=422)
            sample.review = "relabelled"
        else:
            sample.review = "confirmed" if action == "confirm" else "rejected"
            sample.label = sample.code if action == "confirm" else None
        sample.reviewed_by = user.username
        session.add(sample)
        audit(session, user.username, f"sample.{action}", str(sample_id), label=sample.label)
        session.commit()
    target = back if back.startswith("/samples") else "/samples"
    return RedirectResponse(target, status_code=303)


@router.post("/gallery/{entry_id}/withdraw")
def withdraw_entry(
    entry_id: int,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
    csrf_token: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Take a learned gallery entry back; the lanes drop it at their next update."""
    check_csrf(user, csrf_token)
    try:
        with Session(engine) as session:
            entry = withdraw(session, entry_id)
            audit(session, user.username, "gallery.withdraw", str(entry_id), code=entry.code)
            session.commit()
    except ValueError as error:
        return Response(str(error), status_code=404)
    return RedirectResponse("/samples", status_code=303)


# -- audit log ---------------------------------------------------------------------------------
@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    user: Annotated[SignedIn, Depends(require_admin)],
    engine: Annotated[Engine, Depends(get_engine)],
    who: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    query = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(200)
    if who:
        query = query.where(AuditEntry.username == who)
    with Session(engine) as session:
        entries = list(session.exec(query))
    return render(request, "audit.html", user, entries=entries, who=who)
