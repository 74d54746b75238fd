"""The cashier's screen: its page, how the kiosk signs it in, and the websocket that feeds it.

Everything is served by the lane itself, so the screen works with no network beyond the lane.
The kiosk signs in once with the lane's screen key (or a one-time ticket bought with it) and
holds a session cookie from then on; see checkout_node.web.access.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from checkout_node.web.deps import Access, Services, screen_on_socket
from checkout_node.web.services import LaneServices

STATIC = Path(__file__).resolve().parent.parent / "static"
MAX_KEY_FORM = 512  # a screen key is 32 characters; nothing longer is read
NOT_SIGNED_IN = """<!doctype html><meta charset="utf-8"><title>LaneGuard lane</title>
<p>This screen is not signed in. The lane's kiosk opens it with the lane's screen key
(<code>/screen/session?key=...</code>, the key is in the lane's data folder).</p>"""

router = APIRouter(include_in_schema=False)


@router.websocket("/ws/screen", dependencies=[Depends(screen_on_socket)])
async def screen_socket(socket: WebSocket, services: Services) -> None:
    """The lane's whole state first, then its events as they happen; a screen that fell
    behind (the hub says ``resync``) is sent the whole state again instead."""
    await socket.accept()
    queue = services.hub.subscribe()
    try:
        await socket.send_text(await _state_json(services))
        while True:
            data = await queue.get()
            if json.loads(data).get("type") == "resync":
                data = await _state_json(services)
            await socket.send_text(data)
    except WebSocketDisconnect:
        return
    finally:
        services.hub.unsubscribe(queue)


async def _state_json(services: LaneServices) -> str:
    return json.dumps(await run_in_threadpool(services.lane.state))


@router.post("/screen/ticket")
async def screen_ticket(request: Request, access: Access) -> Response:
    """The kiosk trades the screen key (in the body, as a form field) for a one-time
    sign-in ticket good for a minute."""
    body = await request.body()
    if len(body) > MAX_KEY_FORM:
        return Response("the screen key form is at most 512 bytes", status_code=413)
    key = parse_qs(body.decode("latin-1")).get("key", [""])[0].strip()  # a file's newline
    if not access.key_matches(key):
        return Response("wrong screen key", status_code=403)
    return Response(access.issue_ticket(), media_type="text/plain")


@router.get("/screen/session")
def screen_sign_in(request: Request, access: Access, key: str = "", ticket: str = "") -> Response:
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


@router.get("/")
def screen(request: Request, access: Access) -> Response:
    """The screen's page; a browser that is not signed in is told how the kiosk signs in."""
    if not access.screen_signed_in(request.cookies):
        return HTMLResponse(NOT_SIGNED_IN, status_code=401)
    return FileResponse(STATIC / "screen.html", headers={"Cache-Control": "no-store"})
