"""The chain's fixtures: HQ, three enrolled store servers (each with one lane) and a private
NATS JetStream server configured as a chain's broker is (`laneguard hq broker-config`: a
credential per store signed by HQ, no anonymous clients, TLS), all real servers on this
computer."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hq_server.app import create_app as create_hq
from hq_server.settings import HqSettings
from store_server.app import create_app as create_store
from tests.helpers.chain import NatsServer, enrol_lane, enrolled_store
from tests.helpers.live_server import serve


@dataclass
class Site:
    store_id: str
    base: str
    database_url: str
    lane: dict[str, Any]  # the enrolment answer of its one lane

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.lane['credential']}"}


@dataclass
class Chain:
    hq: str
    hq_database_url: str
    hq_app: Any
    sites: dict[str, Site]
    broker: NatsServer
    root: Path


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Chain]:
    hq_url_db = f"sqlite:///{tmp_path / 'hq.sqlite3'}"
    settings = HqSettings(
        database_url=hq_url_db,
        data_dir=tmp_path / "hq",
        wave_check_s=0.3,
        wave_soak_s=0.0,
        store_soak_s=0.0,
    )
    nats = NatsServer(tmp_path / "nats", settings).start()
    settings = settings.model_copy(update={"nats_url": nats.url, "nats_ca_file": nats.ca_file})
    hq_app = create_hq(settings)
    with ExitStack() as stack:
        stack.callback(nats.stop)
        hq = stack.enter_context(serve(hq_app))
        sites = {}
        for store_id in ("A", "B", "C"):
            site = enrolled_store(tmp_path, hq, hq_url_db, store_id, rollout_check_s=0.3)
            base = stack.enter_context(serve(create_store(site.settings)))
            lane = enrol_lane(base, site.database_url, f"lane-{store_id}")
            sites[store_id] = Site(store_id, base, site.database_url, lane)
        yield Chain(hq, hq_url_db, hq_app, sites, nats, tmp_path)
