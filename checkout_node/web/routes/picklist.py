"""The screen's side of the produce pick list: the cashier's tap, and the item's picture.

The till asks for a list with a ``plu_request`` event (routes.pos); the lane shows it on the
screen (a ``pick_list`` event on /ws/screen). A tap here tells the till which PLU to key (a
``plu_chosen`` message on every till websocket). Only the signed-in screen may tap, only for a
list that is open and a PLU it offered, so a page cannot make the till key any code it likes.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field, ValidationError

from checkout_node.lane import pick_picture_id
from checkout_node.pick_lists import PickListError
from checkout_node.web.deps import CurrentLane, json_body, screen_session
from checkout_node.web.errors import invalid

router = APIRouter(tags=["screen"], dependencies=[Depends(screen_session)])
NO_STORE = {"Cache-Control": "no-store"}


class Choice(BaseModel):
    code: str = Field(min_length=1, max_length=14, description="a PLU the list offered")


@router.post(
    "/api/picklist/{request_id}/choose",
    dependencies=[Depends(json_body)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": Choice.model_json_schema()}},
        }
    },
)
async def choose(request_id: str, request: Request, lane: CurrentLane) -> dict[str, Any]:
    """The body is read only once the screen's session is checked."""
    try:
        body = Choice.model_validate_json(await request.body())
    except ValidationError as error:
        raise invalid(error) from None
    try:
        return await run_in_threadpool(lane.choose_plu, request_id, body.code)
    except PickListError as error:
        raise HTTPException(409, str(error)) from None


@router.get("/api/picklist/{request_id}/picture.jpg")
def picture(request_id: str, lane: CurrentLane) -> Response:
    crop = lane.evidence.crop(pick_picture_id(request_id))
    if crop is None:
        raise HTTPException(404, f"no picture for pick list {request_id}")
    return Response(crop, media_type="image/jpeg", headers=NO_STORE)
