"""The dependencies the lane's routers share: the services, and who may call.

Each access check is a dependency a route lists (``dependencies=[Depends(...)]``), so the rule
for a route is read in its decorator; the rules themselves are checkout_node.web.access. The
dependencies are ``async`` because they only read headers and cookies: a plain ``def`` would
cost a hop to the thread pool on every request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, WebSocket
from starlette.requests import HTTPConnection

from checkout_node.lane import Lane
from checkout_node.web.access import LaneAccess
from checkout_node.web.errors import not_recognised, socket_refused
from checkout_node.web.services import LaneApp, LaneServices


async def get_services(connection: HTTPConnection) -> LaneServices:
    app = connection.app
    if not isinstance(app, LaneApp):  # a route of ours mounted on some other application
        raise TypeError("the lane's routes are served by a LaneApp (create_lane_app)")
    return app.services


Services = Annotated[LaneServices, Depends(get_services)]


async def get_lane(services: Services) -> Lane:
    return services.lane


async def get_access(services: Services) -> LaneAccess:
    return services.access


CurrentLane = Annotated[Lane, Depends(get_lane)]
Access = Annotated[LaneAccess, Depends(get_access)]


def client_host(connection: HTTPConnection) -> str | None:
    return connection.client.host if connection.client is not None else None


async def same_origin(request: Request, access: Access) -> None:
    """A browser's request must come from the lane's own pages (tills send no Origin)."""
    if not access.origin_allowed(request.headers):
        raise HTTPException(403, "requests from other sites' pages are refused")


async def json_body(request: Request) -> None:
    """JSON only: a page on another site cannot send it without a CORS preflight."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        raise HTTPException(415, "send JSON (Content-Type: application/json)")


async def till(request: Request, access: Access) -> None:
    """A till the lane knows (its token, or this computer), from no foreign page."""
    await same_origin(request, access)
    if not access.pos_allowed(request.headers, client_host(request)):
        raise not_recognised("till", "till token", "pos_tokens")


async def screen_session(request: Request, access: Access) -> None:
    """The cashier's screen, signed in by the kiosk, from the lane's own pages."""
    await same_origin(request, access)
    if not access.screen_signed_in(request.cookies):
        raise HTTPException(401, "the lane screen is not signed in")


async def scraper(request: Request, access: Access) -> None:
    """Prometheus with a metrics token (or this computer)."""
    if not access.metrics_allowed(request.headers, client_host(request)):
        raise not_recognised("scraper", "metrics token", "metrics_tokens")


async def till_on_socket(socket: WebSocket, access: Access) -> None:
    """``till`` for a websocket: refused before it is accepted."""
    if not access.origin_allowed(socket.headers) or not access.pos_allowed(
        socket.headers, client_host(socket)
    ):
        raise socket_refused("till not recognised or foreign origin")


async def screen_on_socket(socket: WebSocket, access: Access) -> None:
    """``screen_session`` for a websocket: refused before it is accepted."""
    if not access.origin_allowed(socket.headers) or not access.screen_signed_in(socket.cookies):
        raise socket_refused("the lane screen is not signed in")
