"""A lane at work: the real pipeline on simulator frames, till events over the lane's HTTP and
websocket API, and the cashier's screen in a real headless Chromium."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import pytest
from playwright.sync_api import Browser
from websockets.sync.client import connect

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.outbox import Outbox
from checkout_node.reconcile.model import SeenItem
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess, hash_pin
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from laneguard.bundle import SHIPPED_BUNDLE
from simulator.recording import lane_inputs
from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World
from tests.helpers.live_server import serve

CATALOG = LaneCatalog.from_file()
SCREEN_KEY = "screen-key-for-these-tests"
SUPERVISOR_PIN = "2468"


@pytest.fixture(scope="module")
def models() -> LaneModels:
    return load_models(SHIPPED_BUNDLE, profile="x86-2core")


@dataclass
class RunningLane:
    lane: Lane
    url: str
    outbox: Outbox
    access: LaneAccess

    @property
    def kiosk_url(self) -> str:
        """Where the kiosk opens the screen: the sign-in with the lane's screen key."""
        return f"{self.url}/screen/session?key={SCREEN_KEY}"

    def client(self) -> httpx.Client:
        """An HTTP client holding the screen's session, as the screen's own scripts do."""
        client = httpx.Client(base_url=self.url, timeout=10)
        client.cookies.set(self.access.screen_cookie_name, self.access.screen_cookie)
        return client


def start_lane(tmp_path: Path, models: LaneModels, prompt_s: float = 0.0) -> Iterator[RunningLane]:
    hub = ScreenHub()
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    lane = Lane(
        "lane-3",
        LanePipeline(models, LaneZones.standard(640, 480)),
        CATALOG,
        outbox,
        hub.publish,
        customer_prompt_s=prompt_s,
    )
    access = LaneAccess(SCREEN_KEY, supervisor_pins=(hash_pin(SUPERVISOR_PIN),))
    with serve(create_lane_app(lane, hub, live_clock=False, access=access)) as url:
        yield RunningLane(lane, url, outbox, access)
    outbox.close()


@pytest.fixture
def running(tmp_path: Path, models: LaneModels) -> Iterator[RunningLane]:
    yield from start_lane(tmp_path, models)


@pytest.fixture
def prompting(tmp_path: Path, models: LaneModels) -> Iterator[RunningLane]:
    yield from start_lane(tmp_path, models, prompt_s=1.5)


def outbox_kinds(outbox: Outbox) -> list[tuple[str, dict[str, object]]]:
    return [(e.kind, json.loads(e.payload)) for e in outbox.due(1000)]


def test_skip_scan_raises_the_banner_and_a_tap_resolves_it(
    running: RunningLane, browser: Browser, artifacts_dir: Path
) -> None:
    world = World.from_catalog()
    scenario = build_scenario("skip_scan", 3, world, fps=15.0)
    skipped = next(a for a in scenario.items if a.behaviour == "skip_scan")
    page = browser.new_page(viewport={"width": 800, "height": 480})
    page.goto(running.kiosk_url)
    page.wait_for_selector("#link.up")
    events = sorted(lane_inputs(scenario), key=lambda e: e.t)
    renderer = SceneRenderer(scenario, world)
    with httpx.Client(base_url=running.url, timeout=10) as client:
        for index in range(scenario.n_frames):
            t = index / scenario.fps
            while events and events[0].t <= t and events[0].type != "payment":
                event = events.pop(0)
                if event.type == "transaction_end":
                    break
                reply = client.post(
                    "/api/pos/events",
                    content=event.model_dump_json(),
                    headers={"Content-Type": "application/json"},
                )
                assert reply.status_code == 202, reply.text
            frame, _ = renderer.render(index)
            running.lane.process_frame(frame, t)
            if t > (skipped.crossed_at or 0) + 1.0:
                break
        alerts = [
            a
            for a in running.lane.transaction.alerts  # type: ignore[union-attr]
            if a.type == "unscanned_item"
        ]
        assert any(abs(a.raised_s - (skipped.crossed_at or 0)) < 1.0 for a in alerts), alerts
        page.wait_for_selector("#banner:not([hidden])")
        assert page.locator("#banner-title").inner_text() == "Item not scanned"
        page.wait_for_function("document.getElementById('banner-crop').naturalWidth > 0")
        assert page.locator("#seen li.problem").count() >= 1
        page.screenshot(path=str(artifacts_dir / "lane-screen-alert.png"))
        for _ in alerts:
            page.locator("#banner button[data-resolution='rescanned']").click()
            page.wait_for_timeout(150)
        page.wait_for_selector("#banner", state="hidden")
        assert all(a.status == "resolved" for a in alerts)
        end = {"type": "transaction_end", "event_id": "end", "t": 99.0, "transaction_id": "x"}
        assert client.post("/api/pos/events", json=end).status_code == 202
    page.wait_for_function("document.querySelectorAll('#seen li').length === 0")
    page.screenshot(path=str(artifacts_dir / "lane-screen-idle.png"))
    queued = outbox_kinds(running.outbox)
    statuses = {(m["alert_id"], m["status"]) for k, m in queued if k == "alert"}
    assert {(a.alert_id, "open") for a in alerts} <= statuses
    assert {(a.alert_id, "resolved") for a in alerts} <= statuses
    transaction = next(m for k, m in queued if k == "transaction")
    assert transaction["honest"] is False and transaction["seen"]
    page.close()


def test_customer_prompt_comes_first_and_an_override_needs_a_reason(
    prompting: RunningLane, browser: Browser, artifacts_dir: Path
) -> None:
    world = World.from_catalog()
    scenario = build_scenario("honest", 1, world, fps=10.0, n_items=1)
    frame, boxes = SceneRenderer(scenario, world).render(int(scenario.items[0].crossed_at * 10))
    box = next(b for b in boxes if b.cls == 0)
    crop = frame[box.y1 : box.y2, box.x1 : box.x2]
    product = next(p for p in CATALOG.products.values() if p.price_minor >= 500)
    item = SeenItem(
        7, 4.0, 2.0, product.code, "trusted", 0.97, ((product.code, 0.97),),
        cv2.imencode(".jpg", crop)[1].tobytes(), (box.x1, box.y1, box.x2, box.y2),
    )  # fmt: skip
    page = browser.new_page(viewport={"width": 800, "height": 480})
    page.goto(prompting.kiosk_url)
    page.wait_for_selector("#link.up")
    prompting.lane.add_item(item)
    page.wait_for_selector("#prompt:not([hidden])")
    assert page.locator("#prompt h1").inner_text() == "Please scan this item"
    assert page.locator("#prompt-name").inner_text() == product.name
    page.screenshot(path=str(artifacts_dir / "lane-screen-customer-prompt.png"))
    page.wait_for_selector("#banner:not([hidden])", timeout=5000)
    page.locator("#banner button[data-resolution='supervisor_override']").click()
    page.locator("#override button[type=submit]").click()  # no reason: the form refuses
    assert prompting.lane.transaction.alerts[0].status == "open"  # type: ignore[union-attr]
    page.locator("#override-reason").fill("customer paid at service desk")
    page.locator("#override-pin").fill(SUPERVISOR_PIN)
    page.locator("#override button[type=submit]").click()
    page.wait_for_selector("#banner", state="hidden")
    alert = prompting.lane.transaction.alerts[0]  # type: ignore[union-attr]
    assert alert.resolution == "supervisor_override"
    assert alert.reason == "customer paid at service desk"
    page.close()


def test_pos_api_validates_and_the_websocket_acknowledges(running: RunningLane) -> None:
    product = next(iter(CATALOG.products.values()))
    with running.client() as client:
        bad = client.post("/api/pos/events", json={"type": "scan", "event_id": "e1", "t": -1})
        assert bad.status_code == 422 and "scan.t" in bad.json()["detail"]
        invalid_code = {"type": "scan", "event_id": "e2", "t": 1.0, "code": "12345678901"}
        assert client.post("/api/pos/events", json=invalid_code).status_code == 202
        scanned = running.lane.state()["transaction"]["scanned"]  # type: ignore[index]
        assert scanned[0]["code"] == "12345678901" and "digits" in scanned[0]["error"]
        void = {"type": "void", "event_id": "e3", "t": 2.0, "transaction_id": "t", "code": "4011"}
        refused = client.post("/api/pos/events", json=void)
        assert refused.status_code == 409 and "no scanned unit" in refused.json()["detail"]
        resolve = client.post("/api/alerts/nope/resolve", json={"resolution": "rescanned"})
        assert resolve.status_code == 409
    ws_url = running.url.replace("http", "ws") + "/api/pos/ws"
    with connect(ws_url) as socket:
        scan = {"type": "scan", "event_id": "w1", "t": 3.0, "code": product.display_code}
        socket.send(json.dumps(scan))
        assert json.loads(socket.recv(timeout=5)) == {"event_id": "w1", "status": "accepted"}
        socket.send(json.dumps({"type": "scan"}))
        rejected = json.loads(socket.recv(timeout=5))
        assert rejected["status"] == "rejected" and "event_id" in rejected["error"]
    screen_url = running.url.replace("http", "ws") + "/ws/screen"
    cookie = {"Cookie": f"{running.access.screen_cookie_name}={running.access.screen_cookie}"}
    with connect(screen_url, additional_headers=cookie) as socket:
        state = json.loads(socket.recv(timeout=5))
        assert state["type"] == "state" and len(state["transaction"]["scanned"]) == 2
        started = time.monotonic()
        running.lane.add_item(SeenItem(1, 9.0, 8.0, "4011", "trusted", 0.99, (("4011", 0.99),)))
        kinds = [json.loads(socket.recv(timeout=5))["type"] for _ in range(2)]
        assert kinds == ["item", "alert"] and time.monotonic() - started < 5


def test_an_alert_open_at_the_end_of_its_transaction_stays_until_resolved(
    running: RunningLane, browser: Browser, artifacts_dir: Path
) -> None:
    product = next(p for p in CATALOG.products.values() if p.price_minor >= 300)
    running.lane.add_item(
        SeenItem(4, 3.0, 1.0, product.code, "trusted", 0.98, ((product.code, 0.98),))
    )
    end = {"type": "transaction_end", "event_id": "e", "t": 6.0, "transaction_id": "x"}
    with httpx.Client(base_url=running.url, timeout=10) as client:
        assert client.post("/api/pos/events", json=end).status_code == 202
    assert running.lane.transaction is None
    page = browser.new_page(viewport={"width": 800, "height": 480})
    page.goto(running.kiosk_url)  # a screen connecting now still gets the open alert
    page.wait_for_selector("#banner:not([hidden])")
    assert page.locator("#seen li").count() == 0
    page.screenshot(path=str(artifacts_dir / "lane-screen-held-alert.png"))
    page.locator("#banner button[data-resolution='customer_declined']").click()
    page.wait_for_selector("#banner", state="hidden")
    alert = running.lane.ended[0].alerts[0]
    assert alert.status == "resolved" and alert.resolution == "customer_declined"
    assert running.lane.state()["held_alerts"] == []
    page.close()


def test_two_lane_screens_in_one_browser_keep_their_own_sessions(
    running: RunningLane, models: LaneModels, tmp_path: Path, browser: Browser
) -> None:
    """Cookies are kept per host, not per port: the demo's two lanes on 127.0.0.1 (or a
    supervisor's laptop) would sign each other's screen out under one cookie name."""
    other_key = "another-lane-screen-key"
    hub = ScreenHub()
    outbox = Outbox(tmp_path / "other-outbox.sqlite3")
    other = Lane(
        "lane-4", LanePipeline(models, LaneZones.standard(640, 480)), CATALOG, outbox, hub.publish
    )
    access = LaneAccess(other_key)
    assert access.screen_cookie_name != running.access.screen_cookie_name
    context = browser.new_context()
    try:
        with serve(create_lane_app(other, hub, live_clock=False, access=access)) as other_url:
            first, second = context.new_page(), context.new_page()
            first.goto(running.kiosk_url)
            first.wait_for_selector("#link.up")
            second.goto(f"{other_url}/screen/session?key={other_key}")
            second.wait_for_selector("#link.up")
            first.reload()  # still signed in after the other lane's sign-in
            first.wait_for_selector("#link.up")
            assert httpx.get(running.url + "/").status_code == 401  # no cookie, no screen
    finally:
        context.close()
        outbox.close()


def test_the_screen_prices_in_the_catalogs_currency_and_weighs_produce(
    running: RunningLane, browser: Browser
) -> None:
    from product_db.models import SoldBy

    produce = next(p for p in CATALOG.products.values() if p.sold_by == SoldBy.weight)
    packaged = next(p for p in CATALOG.products.values() if p.code_kind != "plu")
    page = browser.new_page(viewport={"width": 800, "height": 480})
    page.goto(running.kiosk_url)
    page.wait_for_selector("#link.up")
    keyed = {"type": "scan", "event_id": "k1", "t": 1.0, "code": produce.display_code,
             "source": "keypad", "weight_g": 420}  # fmt: skip
    scanned = {"type": "scan", "event_id": "k2", "t": 2.0, "code": packaged.display_code}
    with httpx.Client(base_url=running.url, timeout=10) as client:
        for event in (keyed, scanned):
            assert client.post("/api/pos/events", json=event).status_code == 202
    page.wait_for_function("document.querySelectorAll('#scanned li').length === 2")
    rows = page.locator("#scanned li").all_inner_texts()
    per_kg = f"{produce.price_minor / 100:.2f} {produce.currency}/kg"
    weighed = f"{round(produce.price_minor * 0.42) / 100:.2f} {produce.currency}"
    assert "0.420 kg" in rows[0] and per_kg in rows[0] and weighed in rows[0], rows
    assert f"{packaged.price_minor / 100:.2f} {packaged.currency}" in rows[1], rows
    page.close()
