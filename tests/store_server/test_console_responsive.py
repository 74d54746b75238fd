"""Every console page and the cashier's lane screen at a phone's (390x844), a tablet's
(768x1024) and a desktop's (1280x800) size, in a real headless Chromium: nothing scrolls
sideways, the columns that say what happened stay on a phone, and a small evidence crop is not
blown up to fill the page."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response
from sqlmodel import Session

from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.reconcile.model import SeenItem
from laneguard.bundle import SHIPPED_BUNDLE
from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.app import create_app
from store_server.auth import audit, create_user
from store_server.db import migrate
from store_server.rollouts import publish_bundle, start_rollout
from store_server.settings import StoreSettings
from tests.checkout_node.test_lane_screen import CATALOG, RunningLane, start_lane
from tests.helpers.live_server import deliver, enrol, serve
from tests.helpers.messages import alert, clip, heartbeat, sample, transaction, webm

SIZES = {"phone": (390, 844), "tablet": (768, 1024), "desktop": (1280, 800)}

# How wide the document is, and when it is wider than the window, the innermost elements that
# reach past its right edge (to say in the failure what to fix).
MEASURE = """() => {
  const width = window.innerWidth;
  const scroll = document.documentElement.scrollWidth;
  const past = [];
  if (scroll > width) {
    for (const el of document.body.querySelectorAll("*")) {
      const right = el.getBoundingClientRect().right;
      const child = [...el.children].some((c) => c.getBoundingClientRect().right > width + 0.5);
      if (right > width + 0.5 && !child) {
        const name = el.tagName.toLowerCase() + (el.className ? "." + el.className : "");
        past.push(name.replace(/ /g, ".") + " to " + Math.round(right) + "px");
      }
    }
  }
  return {width, scroll, past: past.slice(0, 6)};
}"""

# On how many lines an element's text is laid out (a flex item is one box however its text
# wraps, so count the text's own line boxes).
LINES = """(el) => {
  const range = document.createRange();
  range.selectNodeContents(el);
  return new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size;
}"""


def picture(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    image = np.full((height, width, 3), colour, np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (3 * width // 4, 3 * height // 4), 255, 2)
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[str]:
    """A store with something on every page: alerts (a frame, a clip, a ticket switch with
    only its small crop), their transactions, samples, lanes with heartbeats, a published
    bundle in a rollout with its gate report, a training pass and the audit trail."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    create_user(engine, "ivan", "admin-pass!", "it_admin")
    settings = StoreSettings(database_url=url, data_dir=tmp_path / "data")
    with serve(create_app(settings)) as base:
        credentials = {lane: enrol(base, url, lane) for lane in ("lane-1", "lane-12")}
        switch = alert("lane-1", 2, image=picture(89, 116, (30, 160, 90))).model_copy(
            update={"alert_type": "switch", "scanned_code": "4664", "severity": "medium"}
        )
        deliver(
            base,
            credentials["lane-1"],
            *(transaction("lane-1", n, honest=False) for n in (1, 2, 3)),
            transaction("lane-1", 4),
            alert("lane-1", 1, image=picture(320, 240, (40, 140, 220))),
            switch,
            alert("lane-1", 3, image=picture(89, 116, (90, 90, 200))),
            clip("lane-1", 3, webm(tmp_path, seed=3)),
            sample("lane-1", 5, picture(120, 90, (30, 200, 230))),
            sample("lane-1", 6, picture(60, 140, (200, 120, 40))),
            heartbeat("lane-1", utcnow(), 27.5),
        )
        deliver(base, credentials["lane-12"], heartbeat("lane-12", utcnow(), 14.0))
        with Session(engine) as session:
            gate = {
                "passed": True,
                "checks": [
                    {"check": "recall_real", "production": 0.91, "candidate": 0.93, "passed": True},
                    {"check": "latency_ms_p95", "production": 41, "candidate": 43, "passed": True},
                ],
            }
            release = publish_bundle(
                session, settings.data_dir, SHIPPED_BUNDLE, "ivan", "first fine-tune", (), gate
            )
            start_rollout(session, release.id or 0, ["lane-1"], "ivan", (0.5, 1.0), soak_s=1800)
            audit(
                session,
                "trainer",
                "training.passed",
                "bootstrap-3",
                parent={"version": release.version},
                harvest={"train_crops": 412, "codes": 37},
                gate=gate,
            )
            session.commit()
        engine.dispose()
        yield base


def sign_in(context: BrowserContext, base: str) -> None:
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=username]", "ivan")
    page.fill("input[name=password]", "admin-pass!")
    page.click("form.login button[type=submit]")
    page.wait_for_url(base + "/alerts")
    page.close()


@dataclass
class Screen:
    """One signed-in page at one size, noting what is wrong with each page it shows."""

    page: Page
    base: str
    size: str
    artifacts: Path
    problems: list[str]

    def __post_init__(self) -> None:
        self.page.on("response", self.note_server_error)  # the pages, their pictures and clips

    def note_server_error(self, response: Response) -> None:
        if response.status >= 500:
            self.problems.append(f"{response.url} at {self.size}: HTTP {response.status}")

    def open(self, path: str) -> None:
        reply = self.page.goto(self.base + path)
        assert reply is not None, path

    def check(self, label: str) -> None:
        """No sideways scrolling; a screenshot to look at."""
        measured: dict[str, Any] = self.page.evaluate(MEASURE)
        if measured["scroll"] > measured["width"]:
            self.problems.append(
                f"{label} at {self.size} {SIZES[self.size]} scrolls sideways: the document is "
                f"{measured['scroll']} px wide; past the edge: {measured['past']}"
            )
        name = label.strip("/").replace("/", "-").replace(" ", "-").split("?")[0]
        shot = self.artifacts / f"responsive-{self.size}-{name}.png"
        self.page.screenshot(path=str(shot), full_page=True)


def test_every_console_page_fits_a_phone_a_tablet_and_a_desktop(
    browser: Browser, console: str, artifacts_dir: Path
) -> None:
    started = time.monotonic()
    problems: list[str] = []
    for size, (width, height) in SIZES.items():
        context = browser.new_context(viewport={"width": width, "height": height})
        sign_in(context, console)
        page = context.new_page()
        screen = Screen(page, console, size, artifacts_dir, problems)
        screen.open("/alerts")
        check_alert_columns(page, size, problems)
        screen.check("/alerts")
        screen.open("/transactions")
        screen.check("/transactions")
        flagged = page.locator("tr:has(.tag) a[href^='/transactions/']")
        transactions = [flagged.nth(n).get_attribute("href") or "" for n in range(flagged.count())]
        assert len(transactions) == 3, transactions  # the frame's, the crop's and the clip's
        screen.open("/catalog")
        screen.check("/catalog")
        product = page.locator("table.products a[href^='/catalog/']").first.get_attribute("href")
        for path in ["/alerts/lane-1-a1", "/alerts/lane-1-a2", "/alerts/lane-1-a3"]:
            screen.open(path)
            page.locator("img.evidence").evaluate("img => img.decode()")
            check_evidence_size(page, path, size, problems)
            screen.check(path)
        for path in [*transactions, str(product), "/samples", "/analytics?days=90", "/audit"]:
            screen.open(path)
            screen.check(path)
        screen.open("/rollouts")
        page.locator("details").evaluate_all("all => all.forEach((d) => { d.open = true; })")
        screen.check("/rollouts")
        screen.open("/lanes")
        screen.check("/lanes")
        page.fill("input[name=lane_id]", f"lane-{size}")
        page.click("text=Create enrolment token")
        page.locator("#new-token").wait_for()
        screen.check("/lanes with a new token")
        context.close()
    assert not problems, "\n".join(problems)
    assert time.monotonic() - started < 60


def check_alert_columns(page: Page, size: str, problems: list[str]) -> None:
    """What happened (the alert's type and the item) stays in the list at every size."""
    row = page.locator('tr[data-alert="lane-1-a2"]')
    kind, item = row.locator("td").nth(2), row.locator("td.item")
    for what, cell, text in (("alert type", kind, "switch"), ("item", item, "Banana")):
        if not cell.is_visible() or text not in cell.inner_text():
            problems.append(f"/alerts at {size}: the {what} column is not shown")
    if not row.locator("td a").first.is_visible():
        problems.append(f"/alerts at {size}: no link to the alert's page")


def check_evidence_size(page: Page, path: str, size: str, problems: list[str]) -> None:
    """The evidence is the alert page's main picture, but an item crop is not blown up to fill
    the page: the 89x116 crop of the ticket switch (no clip) stays within 4x its width and
    under 60% of the window's height; the 320x240 frame fills ~500 px on a desktop."""
    box = page.locator("img.evidence").evaluate(
        "img => ({w: img.clientWidth, h: img.clientHeight, nw: img.naturalWidth,"
        " vh: window.innerHeight})"
    )
    if path.endswith("a2") and (box["w"] > 4 * box["nw"] or box["h"] > 0.6 * box["vh"]):
        problems.append(f"{path} at {size}: the {box['nw']} px wide crop is drawn {box}")
    if path.endswith("a1") and size == "desktop" and box["w"] < 500:
        problems.append(f"{path} at {size}: the {box['nw']} px wide frame is drawn {box}")


@pytest.fixture(scope="module")
def lane_models() -> LaneModels:
    return load_models(SHIPPED_BUNDLE, profile="x86-2core")


@pytest.fixture
def lane(tmp_path: Path, lane_models: LaneModels) -> Iterator[RunningLane]:
    yield from start_lane(tmp_path, lane_models)


def test_the_lane_screen_fits_a_phone_a_tablet_and_a_desktop(
    browser: Browser, lane: RunningLane, artifacts_dir: Path
) -> None:
    """Mid-transaction with an alert on screen: the header on one line, nothing sideways."""
    product, other = [p for p in CATALOG.products.values() if p.price_minor >= 300][:2]
    start = {"type": "transaction_start", "event_id": "s", "t": 0.0, "transaction_id": "T-2611"}
    scan = {"type": "scan", "event_id": "e1", "t": 1.0, "code": other.display_code}
    with lane.client() as client:
        for event in (start, scan):
            assert client.post("/api/pos/events", json=event).status_code == 202
    crop = picture(90, 120, (40, 160, 200))
    lane.lane.add_item(
        SeenItem(4, 3.0, 1.0, product.code, "trusted", 0.98, ((product.code, 0.98),), crop)
    )
    problems: list[str] = []
    for size, (width, height) in SIZES.items():
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(lane.kiosk_url)
        page.wait_for_selector("#link.up")
        page.wait_for_selector("#banner:not([hidden])")
        measured: dict[str, Any] = page.evaluate(MEASURE)
        if measured["scroll"] > measured["width"]:
            problems.append(
                f"the lane screen at {size} ({width}x{height}) scrolls sideways: the document "
                f"is {measured['scroll']} px wide; past the edge: {measured['past']}"
            )
        lines = page.locator("#lane").evaluate(LINES)
        if page.locator("#lane").inner_text() != "lane-3" or lines != 1:
            problems.append(f"the lane screen at {size}: the lane id takes {lines} lines")
        page.screenshot(path=str(artifacts_dir / f"responsive-{size}-lane-screen.png"))
        page.close()
    assert not problems, "\n".join(problems)
