"""Gallery updates for lanes: what the store learned from honest transactions, signed."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from store_server.deps import CurrentLane, EngineDep, SigningKey
from store_server.learning import signed_updates

router = APIRouter(prefix="/api/v1", tags=["gallery"])


@router.get("/gallery/updates")
def gallery_updates(
    _lane: CurrentLane,
    engine: EngineDep,
    signing_key: SigningKey,
    since: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> dict[str, Any]:
    """Entries after ``since`` (the last id the lane has), signed with the store's key whose
    public half the lane received at enrolment. ``latest`` is the id to ask after next."""
    return signed_updates(engine, since, signing_key)
