"""The till's integration API: scan and POS events (the wire schema's LaneInput: scan,
transaction_start, transaction_end, payment, void, plu_request), over HTTP or one websocket per
till; the lane's answers to a ``plu_request`` (``plu_chosen``) come on the websocket."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from pydantic import TypeAdapter, ValidationError

from checkout_node.pick_lists import PickListError, Reply
from checkout_node.reconcile.reconciler import ReconcileError
from checkout_node.web.deps import Services, json_body, till, till_on_socket
from checkout_node.web.errors import invalid, problem
from checkout_node.web.services import LaneServices
from laneguard.wire import LaneInput

router = APIRouter(tags=["pos"])
_inputs = TypeAdapter(list[LaneInput])
_input = TypeAdapter(LaneInput)


def accept(
    services: LaneServices, events: Sequence[LaneInput], reply: Reply | None = None
) -> list[str]:
    """Hand ``events`` to the lane in order, on a worker thread (the lane takes its lock and
    may reconcile a whole transaction); the first the lane refuses stops the rest, 409.
    ``reply`` reaches the till that sent them (a websocket's; none over HTTP)."""
    lane = services.lane
    accepted = []
    for event in events:
        try:
            lane.on_input(event, lane.now_s() if services.live_clock else None, reply)
        except (ReconcileError, PickListError) as error:
            raise HTTPException(409, f"{event.event_id}: {error}") from None
        accepted.append(event.event_id)
    return accepted


@router.post(
    "/api/pos/events",
    status_code=202,
    dependencies=[Depends(till), Depends(json_body)],
    # The body is read by hand, after the till is recognised: declared here for the schema.
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
)
async def pos_events(request: Request, services: Services) -> dict[str, Any]:
    """One event or a list of events, as JSON, from a till the lane knows."""
    body = await request.body()
    try:
        payload = json.loads(body)
    except ValueError:
        raise HTTPException(422, "the body is not JSON") from None
    try:
        events = _inputs.validate_python(payload if isinstance(payload, list) else [payload])
    except ValidationError as error:
        raise invalid(error) from None
    return {"accepted": await run_in_threadpool(accept, services, events)}


@router.websocket("/api/pos/ws", dependencies=[Depends(till_on_socket)])
async def pos_socket(socket: WebSocket, services: Services) -> None:
    """One event per message; each is answered accepted or rejected (with why) on the socket,
    so a till keeps one connection through its mistakes. The lane's own messages for the till
    (``plu_chosen``: the PLU the cashier tapped on the pick list) come on the same socket."""
    await socket.accept()
    sending = asyncio.Lock()  # the answers and the lane's messages share one socket
    to_till = TillChannel(asyncio.get_running_loop())
    forwarding = asyncio.create_task(_forward(socket, to_till.queue, sending))
    try:
        while True:
            answer = await _answer(services, await socket.receive_text(), to_till.reply)
            async with sending:
                await socket.send_json(answer)
    except WebSocketDisconnect:
        return
    finally:
        to_till.open = False
        forwarding.cancel()


class TillChannel:
    """The way back to one connected till: the lane's messages for it, from any thread, in
    order and none dropped (at most one per open pick list is ever waiting)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.open = True

    def reply(self, message: dict[str, Any]) -> bool:
        """Thread-safe; False once the till has gone (its socket closed or the loop stopped)."""
        if not self.open or self.loop.is_closed():
            return False
        data = json.dumps({**message, "sent_at": time.time()})
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, data)
        except RuntimeError:  # the loop stopped since the check
            return False
        return True


async def _forward(socket: WebSocket, queue: asyncio.Queue[str], sending: asyncio.Lock) -> None:
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the till went away
        while True:
            message = await queue.get()
            async with sending:
                await socket.send_text(message)


async def _answer(services: LaneServices, text: str, reply: Reply) -> dict[str, Any]:
    try:
        event = _input.validate_json(text)
        await run_in_threadpool(accept, services, [event], reply)
    except ValidationError as error:
        return {"status": "rejected", "error": problem(error)}
    except HTTPException as error:
        return {"status": "rejected", "error": error.detail}
    return {"event_id": event.event_id, "status": "accepted"}
