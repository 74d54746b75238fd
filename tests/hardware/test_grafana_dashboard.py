"""The Grafana dashboard in hardware/ asks only for series the lane and the store server really
expose: its metric names are checked against a real scrape of each."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.metrics import LaneMetrics
from checkout_node.model_bundle import load_models
from checkout_node.outbox import Outbox
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from product_db.db import make_engine
from store_server.db import migrate
from store_server.live import AlertFeed
from store_server.metrics import StoreMetrics
from tests.helpers.paths import REPO_ROOT

DASHBOARD = REPO_ROOT / "hardware" / "grafana" / "laneguard-dashboard.json"


def exposed(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_dashboard_query_names_an_exposed_series(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    lane = Lane(
        "lane-g", LanePipeline(load_models(), LaneZones.standard()), LaneCatalog.from_file(), outbox
    )
    lane_metrics = LaneMetrics(lane, outbox, fps=lambda: 30.0)
    lane.counters.alerts_by_type["unscanned_item"] = 1  # so the labelled family has a sample
    engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate(engine)
    store_metrics = StoreMetrics(engine, AlertFeed())
    store_metrics.ingested({"alert": {"stored": 1}}, 0.002)
    store_metrics.fanout_seconds.observe(0.01)
    names = exposed(lane_metrics.exposition().decode()) | exposed(
        store_metrics.exposition().decode()
    )
    dashboard = json.loads(DASHBOARD.read_text("utf-8"))
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    asked = {m for q in queries for m in re.findall(r"laneguard_[a-z_]+", q)}
    assert len(asked) >= 15
    missing = sorted(m for m in asked if m not in names)
    assert not missing, f"the dashboard asks for series nobody exposes: {missing}"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    outbox.close()
    engine.dispose()
