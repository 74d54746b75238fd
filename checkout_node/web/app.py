"""The lane's own web server: the till's integration API and the cashier's screen.

- ``POST /api/pos/events`` and the websocket ``/api/pos/ws``: scan and POS events from the till
  (routes.pos).
- ``/`` the lane screen, fed by the websocket ``/ws/screen``, signed in at ``/screen/session``
  (routes.screen); alerts are resolved with ``POST /api/alerts/{id}/resolve``; evidence crops at
  ``/api/alerts/{id}/evidence.jpg``, alert clips (privacy-filtered) at
  ``/api/alerts/{id}/clip.webm``; the lane's state at ``/api/state`` (routes.alerts).
- ``/metrics`` for Prometheus and ``/healthz`` (routes.monitoring).
Everything is served by the lane itself: the screen works with no network beyond the lane.
Who may call what is checkout_node.web.access, applied by the dependencies in
checkout_node.web.deps: the till's endpoints need a till token (or this computer), everything
else the screen's session; every POST takes JSON only, and any browser Origin must be the
lane's own. Refusals are answered as checkout_node.web.errors describes.
"""

from __future__ import annotations

from fastapi.staticfiles import StaticFiles

from checkout_node.lane import Lane
from checkout_node.metrics import LaneMetrics
from checkout_node.web.access import LaneAccess
from checkout_node.web.hub import ScreenHub
from checkout_node.web.routes import alerts, monitoring, picklist, pos, screen
from checkout_node.web.services import LaneApp, LaneServices
from laneguard.body_limit import BodyLimit

STATIC = screen.STATIC  # the screen's page, scripts and styles, served at /static


def create_lane_app(
    lane: Lane,
    hub: ScreenHub,
    live_clock: bool = True,
    access: LaneAccess | None = None,
    max_body_bytes: int = 64 << 10,
    metrics: LaneMetrics | None = None,
) -> LaneApp:
    """``live_clock``: till events are placed on the lane's clock when they arrive (a live
    lane); otherwise their own ``t`` is used (replaying a recording). ``access``: who may call
    (default: a fresh screen key, tills from this computer only); it is
    ``app.services.access``, with everything else the routes work with."""
    services = LaneServices(
        lane=lane,
        hub=hub,
        access=access or LaneAccess.random(),
        metrics=metrics or LaneMetrics(lane, lane.outbox),
        live_clock=live_clock,
    )
    app = LaneApp(services)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # Outside everything else: an oversized body is refused before any route reads a byte.
    app.add_middleware(BodyLimit, default_bytes=max_body_bytes)
    for router in (pos.router, alerts.router, picklist.router, screen.router, monitoring.router):
        app.include_router(router)
    return app
