"""The manager's console in a real headless Chromium, driven by Playwright: sign-in, the live
alert feed over its websocket, alert review with evidence, analytics, lanes, samples, catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, Page, expect

from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.app import create_app
from store_server.auth import create_user
from store_server.db import migrate
from store_server.settings import StoreSettings
from tests.helpers.live_server import deliver, enrol, serve
from tests.helpers.messages import alert, heartbeat, sample, transaction


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    create_user(engine, "mia", "manager-pass", "manager")
    create_user(engine, "ivan", "admin-pass!", "it_admin")
    engine.dispose()
    with serve(create_app(StoreSettings(database_url=url, data_dir=tmp_path))) as base:
        yield base, enrol(base, url, "lane-1")


@pytest.fixture
def console_url(store: tuple[str, str]) -> str:
    return store[0]


def browser_sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(base + "/")
    assert page.locator("h1").inner_text() == "Sign in"
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")


def csp_violations(page: Page) -> list[str]:
    """What the page's Content-Security-Policy blocked, as Chromium reports it (to assert the
    console runs whole under its policy: no inline script or handler left behind)."""
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    return blocked


def test_live_alert_arrives_and_is_reviewed_with_its_evidence(
    browser: Browser, store: tuple[str, str], artifacts_dir: Path
) -> None:
    base, credential = store
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    blocked = csp_violations(page)
    browser_sign_in(page, base, "mia", "wrong password")
    expect(page.locator(".error")).to_contain_text("Wrong user name or password")
    page.fill("input[name=username]", "mia")
    page.fill("input[name=password]", "manager-pass")
    page.click("form.login button[type=submit]")
    expect(page.locator("h1")).to_contain_text("Alerts")
    expect(page.locator("#live-state")).to_have_text("live")
    assert page.locator("td.empty").count() == 1

    photo = cv2.imencode(".jpg", np.full((160, 160, 3), (40, 140, 220), np.uint8))[1].tobytes()
    deliver(
        base, credential, transaction("lane-1", 1, honest=False), alert("lane-1", 1, image=photo)
    )
    row = page.locator('tr[data-alert="lane-1-a1"]')
    expect(row).to_be_visible(timeout=5000)  # pushed over the websocket: no reload
    expect(row).to_contain_text("unscanned item")
    expect(row.locator(".outcome")).to_have_text("open")
    page.screenshot(path=str(artifacts_dir / "console-alerts-live.png"))

    deliver(base, credential, alert("lane-1", 1, "resolved"))  # the cashier resolved it
    expect(row.locator(".outcome")).to_have_text("rescanned", timeout=5000)

    row.locator("a").click()
    expect(page.locator("img.evidence")).to_be_visible()
    assert page.locator("img.evidence").evaluate("img => img.naturalWidth") == 160
    page.check("input[value=recovered]")
    page.fill("input[name=note]", "paid after the prompt")
    page.click("form.review button[type=submit]")
    expect(page.locator("#review")).to_contain_text("Recovered")
    page.screenshot(path=str(artifacts_dir / "console-alert-review.png"), full_page=True)

    page.click("text=Analytics")
    page.select_option("select[name=days]", "90")
    page.click("form.filters button")
    expect(page.locator("#n-alerts")).to_have_text("1")
    expect(page.locator("#loss-prevented")).to_have_text("5.99 EUR")
    assert page.locator("svg.bars").count() == 3
    page.screenshot(path=str(artifacts_dir / "console-analytics.png"), full_page=True)

    deliver(base, credential, sample("lane-1", 1, photo), heartbeat("lane-1", utcnow(), 27.5))
    page.click("text=Samples")
    card = page.locator("figure.sample").first
    expect(card).to_contain_text("4011")
    card.locator("button[value=confirm]").click()
    expect(page.locator("figure.sample")).to_have_count(0)
    page.click("text=Lanes")
    expect(page.locator("tr.state-ok")).to_contain_text("lane-1")
    page.screenshot(path=str(artifacts_dir / "console-lanes.png"))

    tablet = browser.new_page(viewport={"width": 768, "height": 1024})
    tablet.context.add_cookies(page.context.cookies())
    tablet.goto(base + "/transactions")
    expect(tablet.locator("table.products tbody tr")).to_have_count(1)
    tablet.fill("input[name=q]", "4011")  # the day left blank, as a manager leaves it
    tablet.click("form.filters button[type=submit]")
    expect(tablet.locator("table.products tbody tr td.code")).to_have_text(["1"])
    expect(tablet.locator(".error")).to_have_count(0)
    tablet.screenshot(path=str(artifacts_dir / "console-transactions-tablet.png"))
    page.close()
    assert blocked == []


def test_it_admin_enrols_a_lane_from_the_console(
    browser: Browser, console_url: str, artifacts_dir: Path
) -> None:
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    browser_sign_in(page, console_url, "ivan", "admin-pass!")
    page.click("text=Lanes")
    page.fill("input[name=lane_id]", "lane-4")
    page.fill("input[name=name]", "Self-checkout 4")
    page.click("text=Create enrolment token")
    token = page.locator("#new-token code").inner_text()
    assert len(token) >= 24
    page.screenshot(path=str(artifacts_dir / "console-enrol.png"), full_page=True)
    enrolled = httpx.post(f"{console_url}/api/v1/enrol", json={"token": token}, timeout=10)
    assert enrolled.json()["lane_id"] == "lane-4"
    page.click("text=Audit")
    expect(page.locator("table.audit")).to_contain_text("lane.enrolled")

    # Retiring asks first (the question from the form's data-confirm, under the CSP).
    questions: list[str] = []
    page.click("text=Lanes")
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    page.locator("form[action='/lanes/lane-4/retire'] button").click()
    expect(page.locator("form[action='/lanes/lane-4/retire']")).to_have_count(1)
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    page.locator("form[action='/lanes/lane-4/retire'] button").click()
    expect(page.locator("form[action='/lanes/lane-4/retire']")).to_have_count(0)
    assert questions == ["Retire lane-4? Its credential stops working."] * 2
    page.close()


def test_both_consoles_send_their_security_headers(console_url: str, tmp_path: Path) -> None:
    """Framing, sniffing, referrers, shared caches and any script but the console's own are
    refused by header, on the store's console and on HQ's, signed in or not."""
    from hq_server.app import create_app as create_hq
    from hq_server.settings import HqSettings
    from tests.helpers.chain import NatsServer

    nats = NatsServer(tmp_path / "nats").start()
    hq = HqSettings(
        database_url=f"sqlite:///{tmp_path / 'hq.sqlite3'}",
        data_dir=tmp_path / "hq",
        nats_url=nats.url,
    )
    try:
        with serve(create_hq(hq)) as hq_url:
            replies = [httpx.get(f"{base}/login") for base in (console_url, hq_url)]
    finally:
        nats.stop()
    replies.append(httpx.get(f"{console_url}/api/v1/nothing-here"))
    for reply in replies:
        headers = reply.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "script-src 'self';" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"


def test_manager_searches_catalog_and_opens_a_product(
    browser: Browser, console_url: str, artifacts_dir: Path
) -> None:
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    browser_sign_in(page, console_url, "mia", "manager-pass")
    page.click("text=Catalog")
    assert page.locator("h1").inner_text() == "Catalog"
    assert page.locator("table.products tbody tr").count() == 50  # first page
    page.screenshot(path=str(artifacts_dir / "console-catalog.png"), full_page=False)

    page.fill("input[name=q]", "pepper")
    page.click("form.filters button[type=submit]")
    rows = page.locator("table.products tbody tr")
    assert rows.count() == 4
    assert "pepper" in rows.first.inner_text().lower()

    page.select_option("select[name=category]", "vegetables")
    page.click("form.filters button[type=submit]")
    page.get_by_role("link", name="Red bell pepper").click()
    assert page.locator("h1").inner_text() == "Red bell pepper"
    assert "0.99 EUR per item" in page.locator("dl.facts").inner_text()
    page.screenshot(path=str(artifacts_dir / "console-product.png"), full_page=True)

    tablet = browser.new_page(viewport={"width": 600, "height": 900})
    tablet.context.add_cookies(page.context.cookies())
    tablet.goto(console_url + "/catalog?category=dairy")
    assert tablet.locator("table.products tbody tr").count() == 7
    tablet.screenshot(path=str(artifacts_dir / "console-catalog-narrow.png"))


def test_an_alert_reads_as_products_with_reference_pictures(
    browser: Browser, store: tuple[str, str], artifacts_dir: Path
) -> None:
    # A manager reads names and prices, not GTIN-14 codes: the live row, the alert page with
    # the seen and the scanned product side by side, and the transaction page.
    base, credential = store
    reference = cv2.imencode(".jpg", np.full((120, 90, 3), (30, 200, 230), np.uint8))[1].tobytes()
    evidence = cv2.imencode(".jpg", np.full((240, 320, 3), (60, 60, 60), np.uint8))[1].tobytes()
    deliver(base, credential, sample("lane-1", 5, reference))  # an honest banana, earlier
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    browser_sign_in(page, base, "mia", "manager-pass")
    expect(page.locator("#live-state")).to_have_text("live")
    switch = alert("lane-1", 9, image=evidence).model_copy(
        update={"alert_type": "switch", "scanned_code": "4664"}
    )
    deliver(base, credential, transaction("lane-1", 9, honest=False), switch)
    row = page.locator('tr[data-alert="lane-1-a9"]')
    expect(row).to_be_visible(timeout=5000)
    expect(row.locator("td.item .name").first).to_have_text("Banana")
    expect(row.locator(".scanned-as .name")).to_have_text("Vine tomatoes")
    expect(row.locator("td.item small.code").first).to_have_text("4011")

    page.reload()  # the same, drawn by the server
    row = page.locator('tr[data-alert="lane-1-a9"]')
    expect(row.locator(".scanned-as")).to_contain_text("Vine tomatoes")
    expect(row.locator(".price").first).to_have_text("1.79 EUR/kg")
    row.locator("a").click()
    cards = page.locator("figure.product-card")
    expect(cards).to_have_count(2)
    expect(cards.nth(0)).to_contain_text("Banana")
    picture = cards.nth(0).locator("img.reference")
    expect(picture).to_be_visible()
    assert picture.evaluate("img => img.naturalWidth") == 90  # the honest sample's crop
    expect(cards.nth(1)).to_contain_text("Vine tomatoes")
    expect(cards.nth(1).locator(".no-reference")).to_be_visible()
    evidence_width = page.locator("img.evidence").evaluate("img => img.clientWidth")
    assert evidence_width >= 500  # the evidence is the page's main picture
    expect(page.locator("#seen")).to_contain_text("Banana")
    page.screenshot(path=str(artifacts_dir / "console-alert-products.png"), full_page=True)
    page.locator("#lane-outcome ~ dd a, dd a[href^='/transactions/']").first.click()
    expect(page.locator("ol.items").first).to_contain_text("Banana")
    page.close()
