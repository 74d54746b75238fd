"""The screen's API: the lane's state, alert evidence (crop and privacy-filtered clip), and
resolving an alert. Only the signed-in screen may call any of it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from checkout_node.reconcile.model import RESOLUTIONS
from checkout_node.reconcile.reconciler import ReconcileError
from checkout_node.web.deps import CurrentLane, Services, json_body, screen_session
from checkout_node.web.errors import invalid
from checkout_node.web.services import LaneServices

router = APIRouter(tags=["screen"], dependencies=[Depends(screen_session)])
NO_STORE = {"Cache-Control": "no-store"}  # evidence stays on the lane, not in a browser cache


class Resolution(BaseModel):
    resolution: str = Field(description=f"one of {', '.join(RESOLUTIONS)}")
    reason: str | None = Field(default=None, max_length=500)
    pin: str | None = Field(
        default=None, max_length=32, description="supervisor PIN, for supervisor_override"
    )


@router.post(
    "/api/alerts/{alert_id}/resolve",
    dependencies=[Depends(json_body)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": Resolution.model_json_schema()}},
        }
    },
)
async def resolve(alert_id: str, request: Request, services: Services) -> dict[str, Any]:
    """The body is read only once the screen's session is checked."""
    try:
        body = Resolution.model_validate_json(await request.body())
    except ValidationError as error:
        raise invalid(error) from None
    return await run_in_threadpool(_resolve, services, alert_id, body)


def _resolve(services: LaneServices, alert_id: str, body: Resolution) -> dict[str, Any]:
    """On a worker thread: checking a PIN is PBKDF2, which takes a while."""
    if body.resolution == "supervisor_override":
        refused = services.access.check_pin(body.pin)
        if refused is not None:
            raise HTTPException(403, refused)
    try:
        alert = services.lane.resolve(alert_id, body.resolution, body.reason)
    except ReconcileError as error:
        raise HTTPException(409, str(error)) from None
    return alert.to_json()


@router.get("/api/alerts/{alert_id}/evidence.jpg")
def evidence(alert_id: str, lane: CurrentLane) -> Response:
    crop = lane.evidence.crop(alert_id)
    if crop is None:
        raise HTTPException(404, f"no evidence image for alert {alert_id}")
    return Response(crop, media_type="image/jpeg", headers=NO_STORE)


@router.get("/api/alerts/{alert_id}/clip.webm")
def clip(alert_id: str, lane: CurrentLane) -> Response:
    video = lane.evidence.clip(alert_id)
    if video is None:
        raise HTTPException(404, f"no clip for alert {alert_id}")
    return Response(video, media_type="video/webm", headers=NO_STORE)


@router.get("/api/state")
def state(lane: CurrentLane) -> dict[str, Any]:
    return lane.state()
