"""Gallery updates for lanes: what the store learned from honest transactions, signed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.engine import Engine

from store_server.deps import get_engine
from store_server.lanes import current_lane
from store_server.learning import signed_updates

router = APIRouter(prefix="/api/v1", tags=["gallery"])


@router.get("/gallery/updates")
def gallery_updates(
    request: Request,
    _lane: Annotated[str, Depends(current_lane)],
    engine: Annotated[Engine, Depends(get_engine)],
    since: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> dict[str, Any]:
    """Entries after ``since`` (the last id the lane has), signed with the store's key whose
    public half the lane received at enrolment. ``latest`` is the id to ask after next."""
    return signed_updates(engine, since, request.app.state.signing_key)
