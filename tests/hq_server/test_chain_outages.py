"""Nothing is lost when HQ, the store server or the broker is killed mid-stream: HQ and the
store run as their own processes (`laneguard hq run`, `laneguard server run`), HQ on
PostgreSQL, and each of the three is SIGKILLed while a lane keeps delivering samples; at the
end HQ holds every sample the store holds, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from sqlalchemy import func
from sqlmodel import Session, col, select

from hq_server.models import ChainReceipt, PooledSample
from hq_server.settings import HqSettings
from laneguard.serving import free_port
from product_db.db import make_engine
from store_server.models import SampleRecord
from tests.helpers.chain import NatsServer, enrol_lane, enrolled_store, wait_for
from tests.helpers.messages import as_json, jpeg, sample

pytestmark = pytest.mark.postgres


class Service:
    """A LaneGuard server in its own process, killed with SIGKILL (no goodbye)."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.args, self.port, self.log = args, port, log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        handle = self.log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "laneguard.cli", *self.args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        wait_for(self._up, 60, f"{self.args[0]} to serve on {self.port}", every=0.2)
        return self

    def _up(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.args} exited: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
            self.process = None


@pytest.fixture
def services(tmp_path: Path, postgres_url: str) -> Iterator[dict[str, object]]:
    # The broker as a chain runs it (laneguard hq broker-config: accounts, TLS).
    nats = NatsServer(tmp_path / "nats", HqSettings(data_dir=tmp_path / "hq")).start()
    hq_port = free_port()
    hq_config = tmp_path / "hq.yaml"
    hq_config.write_text(
        yaml.safe_dump(
            {
                "database_url": postgres_url,
                "data_dir": str(tmp_path / "hq"),
                "nats_url": nats.url,
                "nats_ca_file": str(nats.ca_file),
                "port": hq_port,
            }
        )
    )
    hq = Service(["hq", "run", "--config", str(hq_config)], hq_port, tmp_path / "hq.log").start()
    site = enrolled_store(tmp_path, hq.url, postgres_url, "S1")
    store_port = free_port()
    store_config = tmp_path / "store.yaml"
    store_config.write_text(
        yaml.safe_dump(
            {
                "database_url": site.database_url,
                "data_dir": str(site.settings.data_dir),
                "store_name": site.settings.store_name,
                "discovery_port": 0,
                "port": store_port,
                "hq_status_s": 1.0,
                "tls": False,  # the test plays the lane with plain httpx; TLS has its own tests
            }
        )
    )
    store = Service(
        ["server", "run", "--config", str(store_config), "--no-access-log"],
        store_port,
        tmp_path / "store.log",
    ).start()
    lane = enrol_lane(store.url, site.database_url, "lane-1")
    yield {
        "nats": nats,
        "hq": hq,
        "store": store,
        "lane": lane,
        "store_db": site.database_url,
        "hq_db": postgres_url,
    }
    store.kill()
    hq.kill()
    nats.stop()


def _count(url: str, query: object) -> int:
    engine = make_engine(url)
    with Session(engine) as session:
        value = int(session.exec(query).one())  # type: ignore[call-overload]
    engine.dispose()
    return value


@pytest.mark.timeout(300)
def test_killing_hq_the_broker_or_the_store_mid_stream_loses_nothing(
    services: dict[str, object],
) -> None:
    nats, hq, store = services["nats"], services["hq"], services["store"]
    assert isinstance(nats, NatsServer) and isinstance(hq, Service) and isinstance(store, Service)
    lane = services["lane"]
    assert isinstance(lane, dict)
    headers = {"Authorization": f"Bearer {lane['credential']}"}
    sent = 0

    def deliver(batches: int) -> None:
        """What a lane's uploader does: each batch until the store acknowledges it."""
        nonlocal sent
        for _ in range(batches):
            messages = [as_json(sample("lane-1", sent + k, jpeg(sent + k))) for k in range(5)]
            wait_for(lambda messages=messages: _post(store.url, messages, headers), 60, "ingest")
            sent += 5

    deliver(4)
    hq.kill()  # HQ gone: the store keeps taking its lane's samples
    deliver(3)
    hq.start()
    deliver(2)
    nats.kill()  # the broker gone: both sides retry
    deliver(3)
    nats.start()
    deliver(2)
    store.kill()  # the store gone mid-stream, its cursor possibly behind what HQ has
    store.start()
    deliver(2)
    hq_db, store_db = str(services["hq_db"]), str(services["store_db"])
    in_store = _count(store_db, select(func.count()).select_from(SampleRecord))
    assert in_store == sent == 80
    wait_for(
        lambda: _count(hq_db, select(func.count()).select_from(PooledSample)) == in_store,
        90,
        "HQ to hold every sample",
        every=0.5,
    )
    receipts = _count(
        hq_db,
        select(func.count()).select_from(ChainReceipt).where(col(ChainReceipt.kind) == "sample"),
    )
    assert receipts == in_store  # each stored once, however often it was delivered


def _post(url: str, messages: list[dict[str, object]], headers: dict[str, str]) -> bool:
    try:
        reply = httpx.post(
            f"{url}/api/v1/ingest", json={"messages": messages}, headers=headers, timeout=5
        )
    except httpx.HTTPError:
        return False
    return reply.status_code == 200 and reply.json()["rejected"] == 0
