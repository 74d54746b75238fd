"""Console: loss analytics over a date range (alerts, value and rates per lane and type)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from store_server.analytics import compute
from store_server.console.templating import render
from store_server.deps import CurrentUser, EngineDep, TimeZone

router = APIRouter(include_in_schema=False)


@router.get("/analytics", response_class=HTMLResponse)
def analytics_page(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    zone: TimeZone,
    days: Annotated[int, Query(ge=1, le=366)] = 7,
) -> Response:
    numbers = compute(engine, days, zone=zone)
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
