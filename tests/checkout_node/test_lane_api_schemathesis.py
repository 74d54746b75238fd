"""Property-based tests of the lane's own HTTP API with schemathesis: requests generated from
its OpenAPI schema (valid and invalid), sent as the till and the signed-in screen would send
them, never get a 5xx; sent by a stranger, never get further than 401/403/415."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.model_bundle import load_models
from checkout_node.outbox import Outbox
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess, hash_pin
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from laneguard.bundle import SHIPPED_BUNDLE

TILL = "schemathesis-till-token"
_root = Path(tempfile.mkdtemp(prefix="laneguard-lane-schemathesis-"))
_hub = ScreenHub()
_lane = Lane(
    "lane-1",
    LanePipeline(load_models(SHIPPED_BUNDLE), LaneZones.standard(640, 480)),
    LaneCatalog.from_file(),
    Outbox(_root / "outbox.sqlite3"),
    _hub.publish,
)
ACCESS = LaneAccess("schemathesis-screen-key", (TILL,), (hash_pin("1357"),))
app = create_lane_app(_lane, _hub, live_clock=False, access=ACCESS)
schema = schemathesis.openapi.from_asgi("/openapi.json", app)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@schema.parametrize()
@FUZZ
def test_no_server_errors_for_the_till_and_the_screen(case: schemathesis.Case) -> None:
    response = case.call(
        headers={"Authorization": f"Bearer {TILL}"},
        cookies={ACCESS.screen_cookie_name: ACCESS.screen_cookie},
    )
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )


@schema.parametrize()
@FUZZ
def test_a_stranger_gets_nothing_but_health(case: schemathesis.Case) -> None:
    before = _lane.state()
    response = case.call(headers={"Authorization": "Bearer not-a-till"})
    if case.formatted_path == "/healthz":
        return
    assert response.status_code in (401, 403, 404, 405, 413, 415, 422), (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
    assert _lane.state() == before, "a stranger's request changed the lane"
