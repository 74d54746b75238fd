"""Property-based tests of the store server's HTTP API with schemathesis: requests generated
from the OpenAPI schema (valid and invalid), sent with a real lane credential, never get a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from store_server.app import create_app
from store_server.db import migrate
from store_server.lanes import issue_enrolment_token
from store_server.settings import StoreSettings

_root = Path(tempfile.mkdtemp(prefix="laneguard-schemathesis-"))
_url = f"sqlite:///{_root / 'store.sqlite3'}"
_engine = make_engine(_url)
migrate(_engine)
import_records(_engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
_token = issue_enrolment_token(_engine, "lane-1", created_by="test")
_engine.dispose()
app = create_app(StoreSettings(database_url=_url, data_dir=_root))
with TestClient(app) as _client:
    CREDENTIAL = _client.post("/api/v1/enrol", json={"token": _token}).json()["credential"]

schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call(headers={"Authorization": f"Bearer {CREDENTIAL}"})
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
    )
