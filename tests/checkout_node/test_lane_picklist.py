"""The produce pick list end to end: real rendered produce on the scan area, the real pipeline
and embedder, the till asking over its websocket, the cashier's screen in a real headless
Chromium showing the camera's PLUs with the item's picture, and the tap coming back to the till
as "plu_chosen". A tap is taken only from the signed-in screen, once, and for a PLU offered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser
from websockets.sync.client import connect

from checkout_node.lane import Lane
from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.outbox import Outbox
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from laneguard.bundle import SHIPPED_BUNDLE
from laneguard.wire import PosMessage
from product_db.codes import PLU, parse_code
from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World
from tests.checkout_node.test_lane_screen import CATALOG, SCREEN_KEY, RunningLane
from tests.helpers.live_server import serve


@pytest.fixture(scope="module")
def models() -> LaneModels:
    return load_models(SHIPPED_BUNDLE, profile="x86-2core")


@pytest.fixture
def running(tmp_path: Path, models: LaneModels) -> Iterator[RunningLane]:
    hub = ScreenHub()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    lane = Lane("lane-7", LanePipeline(models, LaneZones.standard(640, 480)), CATALOG, outbox)
    lane.publish = hub.publish
    access = LaneAccess(SCREEN_KEY)
    with serve(create_lane_app(lane, hub, live_clock=False, access=access)) as url:
        yield RunningLane(lane, url, outbox, access)
    outbox.close()


def produce_on_the_scale(lane: Lane) -> str:
    """Run a rendered produce item's frames until it has lain on the scan area a while;
    returns its PLU."""
    world = World.from_catalog()
    scenario = build_scenario("plu_swap", 5, world, fps=15.0)
    produce = next(a for a in scenario.items if isinstance(parse_code(a.code), PLU))
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    on_scale = 0
    for index in range(scenario.n_frames):
        lane.process_frame(renderer.render(index)[0], index / scenario.fps)
        on_scale = on_scale + 1 if lane.pipeline.on_scan_area else 0
        if on_scale >= 8:
            return produce.code
    raise AssertionError("the produce item never lay on the scan area")


def test_the_till_asks_the_screen_shows_the_list_and_the_tap_reaches_the_till(
    running: RunningLane, browser: Browser, artifacts_dir: Path
) -> None:
    plu = produce_on_the_scale(running.lane)
    page = browser.new_page(viewport={"width": 800, "height": 480})
    page.goto(running.kiosk_url)
    page.wait_for_selector("#link.up")
    request = {"type": "plu_request", "event_id": "ask-1", "t": 5.0, "transaction_id": "t-7"}
    with connect(running.url.replace("http", "ws") + "/api/pos/ws") as till:
        till.send(json.dumps(request))
        assert json.loads(till.recv(timeout=10)) == {"event_id": "ask-1", "status": "accepted"}
        page.wait_for_selector("#picklist:not([hidden])")
        choices = page.locator("#picklist-choices button")
        codes = [choices.nth(i).get_attribute("data-code") for i in range(choices.count())]
        assert 1 <= len(codes) <= 4 and all(isinstance(parse_code(c or ""), PLU) for c in codes)
        assert plu in codes, f"the produce on the scale ({plu}) is not offered: {codes}"
        page.wait_for_function("document.getElementById('picklist-picture').naturalWidth > 0")
        page.screenshot(path=str(artifacts_dir / "lane-screen-picklist.png"))
        chosen = codes[0]
        choices.first.click()
        told = json.loads(till.recv(timeout=10))
        assert {k: told[k] for k in ("type", "request_id", "code")} == {
            "type": "plu_chosen",
            "request_id": "ask-1",
            "code": chosen,
        }
        page.wait_for_selector("#picklist", state="hidden")
    assert running.lane.counters.picks == 1
    with running.client() as screen:  # this computer scrapes without a token
        metrics = screen.get("/metrics").text
    assert "laneguard_lane_pick_lists_total 1.0" in metrics.replace('{lane="lane-7"}', "")
    assert "laneguard_lane_picks_total 1.0" in metrics.replace('{lane="lane-7"}', "")
    page.close()


def test_a_tap_is_taken_once_from_the_signed_in_screen_for_an_offered_plu(
    running: RunningLane,
) -> None:
    produce_on_the_scale(running.lane)
    told: list[dict[str, object]] = []
    offered = running.lane.offer_pick_list("ask-2", "t-7", lambda m: told.append(m) is None)
    codes = [p["code"] for p in offered["proposals"]]
    assert codes and offered["has_picture"]
    not_offered = next(
        p.code for p in CATALOG.products.values() if p.code_kind == "plu" and p.code not in codes
    )
    with httpx.Client(base_url=running.url, timeout=10) as stranger:
        refused = stranger.post("/api/picklist/ask-2/choose", json={"code": codes[0]})
        assert refused.status_code == 401
        assert stranger.get("/api/picklist/ask-2/picture.jpg").status_code == 401
    with running.client() as screen:
        assert screen.get("/api/picklist/ask-2/picture.jpg").headers["content-type"] == "image/jpeg"
        foreign = screen.post(
            "/api/picklist/ask-2/choose",
            json={"code": codes[0]},
            headers={"Origin": "https://evil.example"},
        )
        assert foreign.status_code == 403
        other = screen.post("/api/picklist/ask-2/choose", json={"code": not_offered})
        assert other.status_code == 409 and "did not offer" in other.json()["detail"]
        taken = screen.post("/api/picklist/ask-2/choose", json={"code": codes[0]})
        assert taken.status_code == 200 and taken.json()["code"] == codes[0]
        assert [m["code"] for m in told] == [codes[0]]  # to the till that asked, once
        assert screen.get("/api/picklist/ask-2/picture.jpg").status_code == 404  # gone with it
        again = screen.post("/api/picklist/ask-2/choose", json={"code": codes[0]})
        assert again.status_code == 409 and "no open pick list" in again.json()["detail"]
        unknown = screen.post("/api/picklist/nope/choose", json={"code": codes[0]})
        assert unknown.status_code == 409
        not_json = screen.post("/api/picklist/ask-2/choose", content=b"code=4011")
        assert not_json.status_code == 415
    assert running.lane.counters.picks == 1


def test_with_nothing_on_the_scale_the_list_is_empty_and_says_so(running: RunningLane) -> None:
    offered = running.lane.offer_pick_list("ask-3", "t-7", lambda _m: True)
    assert offered["proposals"] == [] and offered["has_picture"] is False


def test_a_list_is_asked_for_over_the_websocket_and_closes_with_its_transaction(
    running: RunningLane,
) -> None:
    """Over HTTP there is no way back to the till: refused. A list still open when the
    transaction ends closes with it (a tap then would key the next customer's sale), and a
    till that went away is reported, not silently skipped."""
    ask = {"type": "plu_request", "event_id": "ask-4", "t": 1.0, "transaction_id": "t-8"}
    with running.client() as client:
        refused = client.post("/api/pos/events", json=ask)
        assert refused.status_code == 409 and "/api/pos/ws" in refused.json()["detail"]
    start = {"type": "transaction_start", "event_id": "s-8", "t": 0.0, "transaction_id": "t-8"}
    running.lane.on_input(PosMessage.model_validate(start))
    produce_on_the_scale(running.lane)
    running.lane.offer_pick_list("ask-5", "t-8", lambda _m: True)
    code = running.lane.pick_lists._open["ask-5"].codes[0]
    running.lane.end_transaction(99.0)
    with running.client() as screen:
        late = screen.post("/api/picklist/ask-5/choose", json={"code": code})
        assert late.status_code == 409 and "no open pick list" in late.json()["detail"]
        running.lane.offer_pick_list("ask-6", "t-9", lambda _m: False)  # its till has gone
        gone = screen.post("/api/picklist/ask-6/choose", json={"code": code})
        assert gone.status_code == 409 and "no longer connected" in gone.json()["detail"]
