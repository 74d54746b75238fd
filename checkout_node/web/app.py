"""The lane's own web server: the till's integration API and the cashier's screen.

- ``POST /api/pos/events`` and the websocket ``/api/pos/ws``: scan and POS events (the wire
  schema's LaneInput: scan, transaction_start, transaction_end, payment, void) from the till.
- ``/`` the lane screen, fed by the websocket ``/ws/screen``; alerts are resolved with
  ``POST /api/alerts/{id}/resolve``; evidence crops at ``/api/alerts/{id}/evidence.jpg``,
  alert clips (privacy-filtered) at ``/api/alerts/{id}/clip.webm``.
Everything is served by the lane itself: the screen works with no network beyond the lane.
Who may call what is checkout_node.web.access: the till's endpoints need a till token (or this
computer), everything else the screen's session; every POST takes JSON only, and any browser
Origin must be the lane's own.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from checkout_node.lane import Lane
from checkout_node.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from checkout_node.metrics import LaneMetrics
from checkout_node.reconcile.model import RESOLUTIONS
from checkout_node.reconcile.reconciler import ReconcileError
from checkout_node.web.access import LaneAccess
from checkout_node.web.hub import ScreenHub
from laneguard.body_limit import BodyLimit
from laneguard.wire import LaneInput

STATIC = Path(__file__).resolve().parent / "static"
_inputs = TypeAdapter(list[LaneInput])
_input = TypeAdapter(LaneInput)


NOT_SIGNED_IN = """<!doctype html><meta charset="utf-8"><title>LaneGuard lane</title>
<p>This screen is not signed in. The lane's kiosk opens it with the lane's screen key
(<code>/screen/session?key=...</code>, the key is in the lane's data folder).</p>"""
WS_POLICY_VIOLATION = 1008  # RFC 6455: the server refuses what the client is or sent


class Resolution(BaseModel):
    resolution: str = Field(description=f"one of {', '.join(RESOLUTIONS)}")
    reason: str | None = Field(default=None, max_length=500)
    pin: str | None = Field(
        default=None, max_length=32, description="supervisor PIN, for supervisor_override"
    )


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "event"
    return f"{where}: {first['msg']}"


def _client_host(request: Request | WebSocket) -> str | None:
    return request.client.host if request.client is not None else None


def _not_recognised(caller: str, token: str, setting: str) -> HTTPException:
    return HTTPException(
        401,
        f"{caller} not recognised: send 'Authorization: Bearer <{token}>' "
        f"({setting} in the lane's settings)",
        headers={"WWW-Authenticate": "Bearer"},
    )


def create_lane_app(
    lane: Lane,
    hub: ScreenHub,
    live_clock: bool = True,
    access: LaneAccess | None = None,
    max_body_bytes: int = 64 << 10,
    metrics: LaneMetrics | None = None,
) -> FastAPI:
    """``live_clock``: till events are placed on the lane's clock when they arrive (a live
    lane); otherwise their own ``t`` is used (replaying a recording). ``access``: who may call
    (default: a fresh screen key, tills from this computer only); it is ``app.state.access``."""
    access = access or LaneAccess.random()
    metrics = metrics or LaneMetrics(lane, lane.outbox)

    def origin(request: Request) -> None:
        if not access.origin_allowed(request.headers):
            raise HTTPException(403, "requests from other sites' pages are refused")

    def json_body(request: Request) -> None:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(415, "send JSON (Content-Type: application/json)")

    def till(request: Request) -> None:
        origin(request)
        if not access.pos_allowed(request.headers, _client_host(request)):
            raise _not_recognised("till", "till token", "pos_tokens")

    def screen_session(request: Request) -> None:
        origin(request)
        if not access.screen_signed_in(request.cookies):
            raise HTTPException(401, "the lane screen is not signed in")

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        hub.loop = asyncio.get_running_loop()
        yield
        hub.loop = None

    app = FastAPI(title=f"LaneGuard lane {lane.lane_id}", lifespan=lifespan)
    app.state.access = access
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(BodyLimit, default_bytes=max_body_bytes)

    def accept(events: list[Any]) -> list[str]:
        accepted = []
        for event in events:
            try:
                lane.on_input(event, lane.now_s() if live_clock else None)
            except ReconcileError as error:
                raise HTTPException(409, f"{event.event_id}: {error}") from None
            accepted.append(event.event_id)
        return accepted

    @app.post(
        "/api/pos/events",
        status_code=202,
        tags=["pos"],
        dependencies=[Depends(till), Depends(json_body)],
        openapi_extra={
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
        },
    )
    async def pos_events(request: Request) -> dict[str, Any]:
        """One event or a list of events, as JSON, from a till the lane knows."""
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
        if not access.origin_allowed(socket.headers) or not access.pos_allowed(
            socket.headers, _client_host(socket)
        ):
            await socket.close(WS_POLICY_VIOLATION, "till not recognised or foreign origin")
            return
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

    @app.post(
        "/api/alerts/{alert_id}/resolve",
        tags=["screen"],
        dependencies=[Depends(screen_session), Depends(json_body)],
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": Resolution.model_json_schema()}},
            }
        },
    )
    async def resolve(alert_id: str, request: Request) -> dict[str, Any]:
        """The body is read only once the screen's session is checked."""
        try:
            body = Resolution.model_validate_json(await request.body())
        except ValidationError as error:
            raise HTTPException(422, _problem(error)) from None
        return await run_in_threadpool(_resolve, alert_id, body)

    def _resolve(alert_id: str, body: Resolution) -> dict[str, Any]:
        if body.resolution == "supervisor_override":  # PBKDF2 takes a while: not on the loop
            refused = access.check_pin(body.pin)
            if refused is not None:
                raise HTTPException(403, refused)
        try:
            alert = lane.resolve(alert_id, body.resolution, body.reason)
        except ReconcileError as error:
            raise HTTPException(409, str(error)) from None
        return alert.to_json()

    @app.get(
        "/api/alerts/{alert_id}/evidence.jpg",
        tags=["screen"],
        dependencies=[Depends(screen_session)],
    )
    def evidence(alert_id: str) -> Response:
        crop = lane.evidence.get(alert_id)
        if crop is None:
            raise HTTPException(404, f"no evidence image for alert {alert_id}")
        return Response(crop, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get(
        "/api/alerts/{alert_id}/clip.webm",
        tags=["screen"],
        dependencies=[Depends(screen_session)],
    )
    def clip(alert_id: str) -> Response:
        video = lane.clip_files.get(alert_id)
        if video is None:
            raise HTTPException(404, f"no clip for alert {alert_id}")
        return Response(video, media_type="video/webm", headers={"Cache-Control": "no-store"})

    @app.get("/api/state", tags=["screen"], dependencies=[Depends(screen_session)])
    def state() -> dict[str, Any]:
        return lane.state()

    @app.websocket("/ws/screen")
    async def screen_socket(socket: WebSocket) -> None:
        if not access.origin_allowed(socket.headers) or not access.screen_signed_in(socket.cookies):
            await socket.close(WS_POLICY_VIOLATION, "the lane screen is not signed in")
            return
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

    @app.post("/screen/ticket", include_in_schema=False)
    async def screen_ticket(request: Request) -> Response:
        """The kiosk trades the screen key (in the body, as a form field) for a one-time
        sign-in ticket good for a minute."""
        body = await request.body()
        if len(body) > 512:
            return Response("the screen key form is at most 512 bytes", status_code=413)
        key = parse_qs(body.decode("latin-1")).get("key", [""])[0].strip()  # a file's newline
        if not access.key_matches(key):
            return Response("wrong screen key", status_code=403)
        return Response(access.issue_ticket(), media_type="text/plain")

    @app.get("/screen/session", include_in_schema=False)
    def screen_sign_in(request: Request, key: str = "", ticket: str = "") -> Response:
        """The kiosk's way in: the screen key or a ticket once, then a session cookie."""
        if not (access.spend_ticket(ticket) if ticket else access.key_matches(key)):
            return HTMLResponse(NOT_SIGNED_IN, status_code=403)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(
            access.screen_cookie_name,
            access.screen_cookie,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    @app.get("/", include_in_schema=False)
    def screen(request: Request) -> Response:
        if not access.screen_signed_in(request.cookies):
            return HTMLResponse(NOT_SIGNED_IN, status_code=401)
        return FileResponse(STATIC / "screen.html", headers={"Cache-Control": "no-store"})

    @app.get("/metrics", tags=["monitoring"], response_class=Response)
    def prometheus(request: Request) -> Response:
        """Prometheus text format; a scraper with a metrics token (or this computer)."""
        if not access.metrics_allowed(request.headers, _client_host(request)):
            raise _not_recognised("scraper", "metrics token", "metrics_tokens")
        return Response(metrics.exposition(), media_type=METRICS_CONTENT_TYPE)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "lane_id": lane.lane_id, "model_version": lane.model_version}

    return app
