"""Console: alerts and estimated loss prevented per store, per type and per day, from the
daily summaries every store sends."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hq_server.models import StoreDay
from laneguard.chain import TALLY_FIGURES
from product_db.models import utcnow
from store_server.auth import SignedIn, current_user
from store_server.console.templating import render
from store_server.deps import get_engine

router = APIRouter(include_in_schema=False)


def loss_report(engine: Engine, days: int) -> dict[str, Any]:
    """The chain's figures over the last ``days`` days (today included)."""
    first = (utcnow() - timedelta(days=days - 1)).date().isoformat()
    with Session(engine) as session:
        rows = list(session.exec(select(StoreDay).where(col(StoreDay.day) >= first)))

    def zeros() -> dict[str, int]:
        return dict.fromkeys((*TALLY_FIGURES, "transactions", "honest", "stores"), 0)

    per_store: dict[str, dict[str, Any]] = defaultdict(zeros)
    per_type: dict[str, dict[str, Any]] = defaultdict(zeros)
    per_day: dict[str, dict[str, Any]] = defaultdict(zeros)
    for row in rows:
        store, day = per_store[row.store_id], per_day[row.day]
        store["transactions"] += row.transactions
        store["honest"] += row.honest
        day["transactions"] += row.transactions
        day["stores"] += 1
        for tally in row.alerts:
            for figure in TALLY_FIGURES:
                value = int(tally.get(figure, 0))  # type: ignore[call-overload]
                store[figure] += value
                per_type[str(tally["alert_type"])][figure] += value
                day[figure] += value
    return {
        "per_store": [{"store_id": k, **v} for k, v in sorted(per_store.items())],
        "per_type": [
            {"alert_type": k, **v}
            for k, v in sorted(per_type.items(), key=lambda kv: -kv[1]["prevented_value_minor"])
        ],
        "per_day": [{"day": k, **v} for k, v in sorted(per_day.items(), reverse=True)],
    }


@router.get("/loss", response_class=HTMLResponse)
def loss_page(
    request: Request,
    user: Annotated[SignedIn, Depends(current_user)],
    engine: Annotated[Engine, Depends(get_engine)],
    days: Annotated[int, Query(ge=1, le=366)] = 30,
) -> Response:
    """Any signed-in HQ user (loss-prevention managers)."""
    return render(request, "loss.html", user, days=days, **loss_report(engine, days))
