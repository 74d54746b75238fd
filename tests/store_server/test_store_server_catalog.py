"""The store server's catalog API and console pages over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import create_tables, make_engine
from store_server.app import create_app
from store_server.auth import create_user
from store_server.settings import StoreSettings
from tests.helpers.live_server import serve, sign_in


@pytest.fixture
def server_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    engine = make_engine(database_url)
    create_tables(engine)
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    engine.dispose()
    settings = StoreSettings(database_url=database_url, data_dir=tmp_path)
    with serve(create_app(settings)) as url:
        yield url


def test_catalog_api(server_url: str) -> None:
    with httpx.Client(base_url=server_url, timeout=10) as client:
        listed = client.get("/api/catalog/products", params={"category": "dairy"}).json()
        assert listed and all(p["category"] == "dairy" for p in listed)
        banana = client.get("/api/catalog/products/4011").json()
        assert banana["name"] == "Banana" and banana["price_minor"] == 179
        assert banana["price_history"][0]["source"] == "sample"
        missing = client.get("/api/catalog/products/4006381333931")
        assert missing.status_code == 404 and "no product" in missing.json()["detail"]
        invalid = client.get("/api/catalog/products/4006381333932")
        assert invalid.status_code == 422 and "check digit" in invalid.json()["detail"]
        too_many = client.get("/api/catalog/products", params={"limit": 5000})
        assert too_many.status_code == 422
        assert client.get("/healthz").json() == {"status": "ok"}


def test_console_catalog_pages(server_url: str, database_url: str) -> None:
    engine = make_engine(database_url)
    create_user(engine, "mia", "correct horse", "manager")
    engine.dispose()
    with httpx.Client(base_url=server_url, timeout=10, follow_redirects=True) as client:
        assert "Sign in" in client.get("/catalog").text  # nothing without signing in
        sign_in(client, "mia", "correct horse")
        page = client.get("/catalog")
        assert page.status_code == 200 and "Catalog" in page.text
        assert "Granny Smith apple" in client.get("/catalog", params={"q": "granny"}).text
        detail = client.get("/catalog/4011")
        assert "Banana" in detail.text and "1.79 EUR per kg" in detail.text
        assert client.get("/catalog/123").status_code == 404
