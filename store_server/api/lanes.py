"""Lane enrolment (zero-touch) and what an enrolled lane may ask of its store server."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from laneguard.signing import public_pem
from product_db.models import utcnow
from store_server.auth import (
    audit,
    audit_client,
    record_enrolment_failure,
    refuse_while_enrolment_throttled,
)
from store_server.deps import CurrentLane, EngineDep, Services, SettingsDep, SigningKey
from store_server.lanes import EnrolmentError, enrol
from store_server.models import Lane
from store_server.settings import StoreSettings

router = APIRouter(prefix="/api/v1", tags=["lanes"])


class EnrolRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=8, max_length=128)
    hardware: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, max_length=32, description="what the board reports about itself"
    )


class EnrolResponse(BaseModel):
    lane_id: str
    name: str
    credential: str = Field(description="send as 'Authorization: Bearer ...'; shown once")
    config: dict[str, Any]


class LaneConfigOut(BaseModel):
    lane_id: str
    name: str
    config: dict[str, Any]


def lane_config(settings: StoreSettings, gallery_key: str) -> dict[str, Any]:
    """What every lane of this store is told at enrolment, including the public key its
    gallery updates are signed with."""
    return {
        "store_name": settings.store_name,
        "currency": settings.currency,
        "heartbeat_s": 5.0,
        "gallery_key": gallery_key,
    }


@router.get(
    "/tls-binding",
    responses={404: {"description": "the server serves plain HTTP"}},
)
def tls_binding(services: Services) -> dict[str, object]:
    """Anyone: the store key's signature over the certificate this server serves, which a lane
    checks against the key its enrolment token names before it sends the token (laneguard.tls).
    It is public: a signature proves nothing but who vouched for which certificate."""
    if services.tls_binding is None:
        raise HTTPException(404, "this store server serves plain HTTP (its tls setting is off)")
    return services.tls_binding


@router.post("/enrol", response_model=EnrolResponse, responses={403: {"description": "refused"}})
def enrol_lane(
    request: EnrolRequest,
    engine: EngineDep,
    settings: SettingsDep,
    signing_key: SigningKey,
) -> EnrolResponse:
    """A new lane presents its one-time token and gets its id, config and credential.

    Wrong tokens are audited and counted by client address: after a few, each try waits
    longer (429 with Retry-After), and many lock the address out for a while."""
    address = audit_client.get()
    now = utcnow()
    with Session(engine) as session:
        refuse_while_enrolment_throttled(session, address, now)
        try:
            config = lane_config(settings, public_pem(signing_key))
            enrolled = enrol(session, request.token, dict(request.hardware), config)
        except EnrolmentError as error:
            session.rollback()
            record_enrolment_failure(session, "lane:?", address, now)
            session.commit()
            raise HTTPException(403, str(error)) from None
        audit(session, f"lane:{enrolled.lane_id}", "lane.enrolled", enrolled.lane_id)
        session.commit()
    return EnrolResponse(
        lane_id=enrolled.lane_id,
        name=enrolled.name,
        credential=enrolled.credential,
        config=enrolled.config,
    )


@router.get("/lane/config", response_model=LaneConfigOut)
def my_config(
    lane_id: CurrentLane,
    engine: EngineDep,
) -> LaneConfigOut:
    """The calling lane's own configuration (its credential says which lane it is)."""
    with Session(engine) as session:
        lane = session.get(Lane, lane_id)
        assert lane is not None
        return LaneConfigOut(lane_id=lane.lane_id, name=lane.name, config=lane.config)
