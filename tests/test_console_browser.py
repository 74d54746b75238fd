"""The catalog console in a real headless Chromium, driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import create_tables, make_engine
from store_server.app import create_app
from store_server.settings import StoreSettings
from tests.live_server import serve


@pytest.fixture
def console_url(tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    engine = make_engine(url)
    create_tables(engine)
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    engine.dispose()
    with serve(create_app(StoreSettings(database_url=url, data_dir=tmp_path))) as base:
        yield base


def test_manager_searches_catalog_and_opens_a_product(
    browser: Browser, console_url: str, artifacts_dir: Path
) -> None:
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    page.goto(console_url + "/")
    assert page.locator("h1").inner_text() == "Catalog"
    assert page.locator("table.products tbody tr").count() == 50  # first page
    page.screenshot(path=str(artifacts_dir / "console-catalog.png"), full_page=False)

    page.fill("input[name=q]", "pepper")
    page.click("button[type=submit]")
    rows = page.locator("table.products tbody tr")
    assert rows.count() == 4
    assert "pepper" in rows.first.inner_text().lower()

    page.select_option("select[name=category]", "vegetables")
    page.click("button[type=submit]")
    page.get_by_role("link", name="Red bell pepper").click()
    assert page.locator("h1").inner_text() == "Red bell pepper"
    assert "0.99 EUR per item" in page.locator("dl.facts").inner_text()
    page.screenshot(path=str(artifacts_dir / "console-product.png"), full_page=True)

    tablet = browser.new_page(viewport={"width": 600, "height": 900})
    tablet.goto(console_url + "/catalog?category=dairy")
    assert tablet.locator("table.products tbody tr").count() == 7
    tablet.screenshot(path=str(artifacts_dir / "console-catalog-narrow.png"))
