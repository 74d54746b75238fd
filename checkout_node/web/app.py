"""The lane's own web server: the till's integration API and the cashier's screen.

- ``POST /api/pos/events`` and the websocket ``/api/pos/ws``: scan and POS events (the wire
  schema's LaneInput: scan, transaction_start, transaction_end, payment, void) from the till.
- ``/`` the lane screen, fed by the websocket ``/ws/screen``; alerts are resolved with
  ``POST /api/alerts/{id}/resolve``; evidence crops at ``/api/alerts/{id}/evidence.jpg``.
Everything is served by the lane itself: the screen works with no network beyond the lane.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from checkout_node.lane import Lane
from checkout_node.reconcile.model import RESOLUTIONS
from checkout_node.reconcile.reconciler import ReconcileError
from checkout_node.web.hub import ScreenHub
from laneguard.wire import LaneInput

STATIC = Path(__file__).resolve().parent / "static"
_inputs = TypeAdapter(list[LaneInput])
_input = TypeAdapter(LaneInput)


class Resolution(BaseModel):
    resolution: str = Field(description=f"one of {', '.join(RESOLUTIONS)}")
    reason: str | None = Field(default=None, max_length=500)


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "event"
    return f"{where}: {first['msg']}"


def create_lane_app(lane: Lane, hub: ScreenHub, live_clock: bool = True) -> FastAPI:
    """``live_clock``: till events are placed on the lane's clock when they arrive (a live
    lane); otherwise their own ``t`` is used (replaying a recording)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        yield
        hub.loop = None

    app = FastAPI(title=f"LaneGuard lane {lane.lane_id}", lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def accept(events: list[Any]) -> list[str]:
        accepted = []
        for event in events:
            try:
                lane.on_input(event, lane.now_s() if live_clock else None)
            except ReconcileError as error:
                raise HTTPException(409, f"{event.event_id}: {error}") from None
            accepted.append(event.event_id)
        return accepted

    @app.post("/api/pos/events", status_code=202, tags=["pos"])
    async def pos_events(request: Request) -> dict[str, Any]:
        """One event or a list of events, as JSON (whatever content type the till sends)."""
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError:
            raise HTTPException(422, "the body is not JSON") from None
        try:
            events = _inputs.validate_python(payload if isinstance(payload, list) else [payload])
        except ValidationError as error:
            raise HTTPException(422, _problem(error)) from None
        return {"accepted": await run_in_threadpool(accept, events)}

    @app.websocket("/api/pos/ws")
    async def pos_socket(socket: WebSocket) -> None:
        await socket.accept()
        try:
            while True:
                text = await socket.receive_text()
                try:
                    event = _input.validate_json(text)
                    await run_in_threadpool(accept, [event])
                    await socket.send_json({"event_id": event.event_id, "status": "accepted"})
                except ValidationError as error:
                    await socket.send_json({"status": "rejected", "error": _problem(error)})
                except HTTPException as error:
                    await socket.send_json({"status": "rejected", "error": error.detail})
        except WebSocketDisconnect:
            return

    @app.post("/api/alerts/{alert_id}/resolve", tags=["screen"])
    def resolve(alert_id: str, body: Resolution) -> dict[str, Any]:
        try:
            alert = lane.resolve(alert_id, body.resolution, body.reason)
        except ReconcileError as error:
            raise HTTPException(409, str(error)) from None
        return alert.to_json()

    @app.get("/api/alerts/{alert_id}/evidence.jpg", tags=["screen"])
    def evidence(alert_id: str) -> Response:
        crop = lane.evidence.get(alert_id)
        if crop is None:
            raise HTTPException(404, f"no evidence image for alert {alert_id}")
        return Response(crop, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/api/state", tags=["screen"])
    def state() -> dict[str, Any]:
        return lane.state()

    @app.websocket("/ws/screen")
    async def screen_socket(socket: WebSocket) -> None:
        await socket.accept()
        queue = hub.subscribe()
        try:
            await socket.send_text(json.dumps(await run_in_threadpool(lane.state)))
            while True:
                data = await queue.get()
                if json.loads(data).get("type") == "resync":
                    data = json.dumps(await run_in_threadpool(lane.state))
                await socket.send_text(data)
        except WebSocketDisconnect:
            return
        finally:
            hub.unsubscribe(queue)

    @app.get("/", include_in_schema=False)
    def screen() -> FileResponse:
        return FileResponse(STATIC / "screen.html", headers={"Cache-Control": "no-store"})

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "lane_id": lane.lane_id, "model_version": lane.model_version}

    return app
