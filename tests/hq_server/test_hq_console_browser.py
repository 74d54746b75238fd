"""HQ's console in a real headless Chromium: sign-in, the stores with their lanes and
bundles, adding a store, loss across stores from the stores' daily summaries, and a release
rolled out from the Releases page and halted there."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session

from hq_server.releases import publish_release
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.auth import create_user
from tests.helpers.chain import shifted_bundle
from tests.helpers.live_server import sign_in
from tests.helpers.messages import alert, as_json, heartbeat, transaction
from tests.hq_server.conftest import Chain


def _sign_in(page: Page, base: str, username: str, password: str) -> None:
    page.goto(base + "/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("form.login button[type=submit]")


def _confirmed_loss_in_store_a(chain: Chain) -> None:
    """Store A's lane raises an alert (an unscanned item worth 5.99); its manager reviews it as
    recovered (paid for in the end): loss prevented."""
    a = chain.sites["A"]
    raised = alert("lane-A", 1).model_copy(update={"raised_at": utcnow()})
    bought = transaction("lane-A", 1, honest=False)
    reply = httpx.post(
        f"{a.base}/api/v1/ingest",
        json={"messages": [as_json(bought), as_json(raised)]},
        headers=a.headers,
    )
    assert reply.json()["rejected"] == 0, reply.text
    engine = make_engine(a.database_url)
    create_user(engine, "mia", "manager-pass", "manager")
    engine.dispose()
    with httpx.Client(base_url=a.base) as console:
        csrf = sign_in(console, "mia", "manager-pass")
        reviewed = console.post(
            "/alerts/lane-A-a1/review", data={"review": "recovered", "csrf_token": csrf}
        )
        assert reviewed.status_code in (200, 303)
        lanes = console.get("/lanes").text  # the store's own console shows its link to HQ
        assert 'id="chain-link"' in lanes and "<strong>A</strong> of its chain" in lanes
    metrics = httpx.get(f"{a.base}/metrics").text
    assert "laneguard_store_hq_connected 1.0" in metrics
    assert 'laneguard_store_hq_messages{direction="sent"}' in metrics


def test_it_sees_every_store_and_rolls_a_release_out_from_the_console(
    browser: Browser, chain: Chain, tmp_path: Path, artifacts_dir: Path
) -> None:
    engine = make_engine(chain.hq_database_url)
    create_user(engine, "ines", "hq-admin-pass!", "it_admin")
    create_user(engine, "lorenzo", "hq-manager-pass", "manager")
    _confirmed_loss_in_store_a(chain)
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    for site in chain.sites.values():  # each store's lane reports in
        beat = heartbeat(f"lane-{site.store_id}", utcnow(), 25.0)
        reply = httpx.post(
            f"{site.base}/api/v1/ingest", json={"messages": [as_json(beat)]}, headers=site.headers
        )
        assert reply.status_code == 200, reply.text
    _sign_in(page, chain.hq, "lorenzo", "hq-manager-pass")
    expect(page.locator("h1")).to_have_text("Stores")
    for _ in range(40):  # each store's next status (every second here) carries its lane
        if page.locator("tr", has_text="1 of 1 ok").count() == 3:
            break
        page.wait_for_timeout(500)
        page.reload()
    for store_id in "ABC":
        row = page.locator(f"tr[data-store={store_id}]")
        expect(row.locator("td.state")).to_have_text("online")
        expect(row).to_contain_text(f"lane-{store_id}")
        expect(row).to_contain_text("1 of 1 ok")
    assert page.locator("form[action='/stores']").count() == 0  # managers add no stores

    page.goto(chain.hq + "/loss")
    for _ in range(40):  # store A's figures come with its next summary (every second here)
        if "5.99" in page.locator("tr[data-store=A] td.prevented").inner_text():
            break
        page.wait_for_timeout(500)
        page.reload()
    expect(page.locator("tr[data-store=A] td.prevented")).to_contain_text("5.99")
    expect(page.locator("table.loss-types")).to_contain_text("unscanned_item")
    page.screenshot(path=str(artifacts_dir / "hq-loss.png"), full_page=True)

    page.click("form.inline button.link")  # sign out
    _sign_in(page, chain.hq, "ines", "hq-admin-pass!")
    page.fill("input[name=store_id]", "D")
    page.fill("input[name=name]", "Dockside")
    page.click("form[action='/stores'] button[type=submit]")
    expect(page.locator("#new-token")).to_contain_text("Token for D")
    token = re.search(r"\(shown once\): (\S+)", page.locator("#new-token").inner_text())
    assert token is not None and len(token.group(1)) > 20
    expect(page.locator("tr[data-store=D] td.state")).to_have_text("awaiting enrolment")
    page.screenshot(path=str(artifacts_dir / "hq-stores.png"), full_page=True)

    state = chain.hq_app.state
    with Session(state.engine) as session:
        release = publish_release(
            session,
            state.outbox,
            state.settings.data_dir,
            shifted_bundle(tmp_path),
            state.hq_key,
            "test",
        )
        session.commit()
        release_id = release.id
    page.goto(chain.hq + "/releases")
    row = page.locator(f"tr[data-release='{release_id}']")
    row.locator("select[name=canary]").select_option("B")
    row.locator("button", has_text="Start with this canary").click()
    expect(page.locator("#active-rollout h2")).to_contain_text("running")
    expect(page.locator("#active-rollout li.current")).to_contain_text("canary: B")
    page.screenshot(path=str(artifacts_dir / "hq-releases.png"), full_page=True)
    page.fill("#active-rollout input[name=reason]", "wrong promotion prices")
    page.click("#active-rollout button.danger")
    expect(page.locator("table.rollouts")).to_contain_text("wrong promotion prices")
    assert page.locator("#active-rollout").count() == 0
    engine.dispose()
