"""Console: the transaction history, its search, and one transaction's seen and scanned
items with their alerts."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import ColumnElement, String, cast, or_
from sqlmodel import Session, col, select

from product_db.codes import InvalidCodeError, parse_code
from store_server.console.templating import DATABASE_INT_MAX, error_page, render
from store_server.deps import CurrentUser, EngineDep, TimeZone
from store_server.models import AlertClip, AlertRecord, TransactionRecord
from store_server.products import describe

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50


@router.get("/transactions", response_class=HTMLResponse)
def transactions_page(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    zone: TimeZone,
    lane: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=64)] = "",
    # A string, not a date: the form sends "day=" when the field is left blank (the usual
    # search), which a date parameter would refuse before the page could answer.
    day: Annotated[str, Query(max_length=32)] = "",
    flagged: bool = False,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    """Newest first; ``q`` finds a transaction id or a product code seen or scanned in it."""
    chosen_day, error = _day(day)
    query = select(TransactionRecord).order_by(col(TransactionRecord.ended_at).desc())
    if lane:
        query = query.where(TransactionRecord.lane_id == lane)
    if flagged:
        query = query.where(TransactionRecord.honest == False)  # noqa: E712
    if chosen_day is not None:
        # The store's day: midnight to midnight on its clock.
        start = datetime.combine(chosen_day, time.min, tzinfo=zone)
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
        status_code=422 if error else 200,
        error=error,
        transactions=rows[:PAGE_SIZE],
        has_next=len(rows) > PAGE_SIZE,
        page=page,
        lanes=lanes,
        filters={"lane": lane, "q": q, "day": chosen_day.isoformat() if chosen_day else ""},
        flagged=flagged,
    )


def _day(text: str) -> tuple[date | None, str]:
    """The day to show (None: every day) and, for text that is not a date, what is wrong
    with it; the search then runs without the day rather than failing whole."""
    if not text.strip():
        return None, ""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        return None, f"Day {text.strip()!r} is not a date: use YYYY-MM-DD (e.g. 2026-12-04)."
    if not 1970 <= day.year <= 9998:  # the day's bounds in any time zone stay representable
        return None, f"Day {day.isoformat()} is out of range: use a year from 1970 to 9998."
    return day, ""


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
    record_id: Annotated[int, PathParam(ge=1, le=DATABASE_INT_MAX)],
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
) -> Response:
    with Session(engine) as session:
        record = session.get(TransactionRecord, record_id)
        if record is None:
            return error_page(request, user, 404, "no such transaction")
        alerts = list(
            session.exec(
                select(AlertRecord).where(
                    AlertRecord.lane_id == record.lane_id,
                    AlertRecord.transaction_id == record.transaction_id,
                )
            )
        )
        codes = [e.get("code") for e in record.seen] + [s.get("code") for s in record.scanned]
        for a in alerts:
            codes += [a.seen_code, a.scanned_code, *(g["code"] for g in a.guesses or [])]
        products = describe(session, [str(c) if c else None for c in codes])
        clips = {
            a.alert_id: clip.media
            for a in alerts
            if (clip := session.get(AlertClip, (a.lane_id, a.alert_id))) is not None and clip.media
        }
    return render(
        request,
        "transaction.html",
        user,
        tx=record,
        alerts=alerts,
        products=products,
        clips=clips,
    )
