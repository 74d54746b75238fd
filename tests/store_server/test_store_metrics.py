"""The store server's /metrics over real HTTP on SQLite and PostgreSQL: what lanes delivered,
a console on the live feed and the fan-out to it, lanes online, samples; scrapers need a token."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select
from websockets.sync.client import connect

from product_db.db import make_engine
from store_server.app import create_app
from store_server.auth import create_user
from store_server.db import migrate
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, serve, sign_in
from tests.helpers.messages import NOW, alert, as_json, heartbeat, jpeg, sample, transaction

TOKEN = "store-scrape-token-for-these-tests-42"


@dataclass
class Store:
    url: str
    credential: str

    def ingest(self, messages: list[dict[str, object]]) -> dict[str, object]:
        reply = httpx.post(
            f"{self.url}/api/v1/ingest",
            json={"messages": messages},
            headers={"Authorization": f"Bearer {self.credential}"},
        )
        assert reply.status_code == 200, reply.text
        answer: dict[str, object] = reply.json()
        return answer

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        reply = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status_code == 200, reply.text
        out = {}
        for family in text_string_to_metric_families(reply.text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(database_url)
    migrate(engine)
    create_user(engine, "mia", "manager-pass", "manager")
    engine.dispose()
    settings = StoreSettings(database_url=database_url, data_dir=tmp_path, metrics_tokens=[TOKEN])
    with serve(create_app(settings)) as url:
        yield Store(url, enrol(url, database_url, "lane-1"))


def test_ingest_is_counted_by_kind_and_outcome(store: Store) -> None:
    batch = [
        as_json(transaction("lane-1", 1)),
        as_json(transaction("lane-1", 2)),
        as_json(alert("lane-1", 1, image=jpeg(1))),
        as_json(sample("lane-1", 1, jpeg(2))),
        as_json(heartbeat("lane-1", NOW, 24.0)),
        {"type": "made-up-kind", "message_id": "m-x", "lane_id": "lane-1"},
    ]
    first = store.ingest(batch)
    assert (first["stored"], first["rejected"]) == (5, 1)
    again = store.ingest(batch[:2])
    assert again["duplicates"] == 2
    got = store.scrape()
    total = "laneguard_store_ingest_messages_total"
    assert got[(total, (("kind", "transaction"), ("status", "stored")))] == 2
    assert got[(total, (("kind", "transaction"), ("status", "duplicate")))] == 2
    assert got[(total, (("kind", "alert"), ("status", "stored")))] == 1
    assert got[(total, (("kind", "sample"), ("status", "stored")))] == 1
    assert got[(total, (("kind", "heartbeat"), ("status", "stored")))] == 1
    # A kind the schema does not know never becomes a label of its own.
    assert got[(total, (("kind", "invalid"), ("status", "rejected")))] == 1
    assert not [k for k in got if ("kind", "made-up-kind") in k[1]]
    seconds = "laneguard_store_ingest_seconds_count"
    assert got[(seconds, (("kind", "transaction"),))] == 2  # two requests carried transactions
    assert got[(seconds, (("kind", "alert"),))] == 1
    assert got[("laneguard_store_lanes_online", ())] == 1
    assert got[("laneguard_store_lane_camera_up", (("lane", "lane-1"),))] == 1
    assert got[("laneguard_store_samples", (("review", "pending"),))] == 1


def test_alert_fan_out_to_a_console_is_timed(store: Store) -> None:
    with httpx.Client(base_url=store.url) as client:
        sign_in(client, "mia", "manager-pass")
        cookie = client.cookies["lg_session"]
    ws_url = store.url.replace("http://", "ws://") + "/ws/alerts"
    with connect(ws_url, additional_headers={"Cookie": f"lg_session={cookie}"}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        assert store.scrape()[("laneguard_store_console_websockets", ())] == 1
        store.ingest([as_json(alert("lane-1", 7))])
        event = json.loads(ws.recv(timeout=10))
    assert event["type"] == "alert" and not [k for k in event if k.startswith("_")]
    got = store.scrape()
    assert got[("laneguard_store_alert_fanout_seconds_count", ())] == 1
    assert 0 <= got[("laneguard_store_alert_fanout_seconds_sum", ())] < 5


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": TOKEN}],
    ids=["no token", "wrong token", "not bearer"],
)
def test_a_scraper_without_the_token_gets_nothing(store: Store, headers: dict[str, str]) -> None:
    reply = httpx.get(f"{store.url}/metrics", headers=headers)
    assert reply.status_code == 401
    assert "metrics token" in reply.json()["detail"] and "laneguard_" not in reply.text
    # The lane's own credential is not a scraper's either.
    lane = httpx.get(
        f"{store.url}/metrics", headers={"Authorization": f"Bearer {store.credential}"}
    )
    assert lane.status_code == 401


@pytest.mark.parametrize("ending", ["sign-out", "deactivation"])
def test_a_console_whose_session_ended_is_closed_and_shown_nothing_more(
    store: Store, database_url: str, ending: str
) -> None:
    """The live feed checks the session again: after signing out in another tab, or after
    IT deactivates the user, the open websocket is closed (4401) before the next alert."""
    from websockets.exceptions import ConnectionClosed

    from store_server.models import User

    with httpx.Client(base_url=store.url) as client:
        csrf = sign_in(client, "mia", "manager-pass")
        cookie = client.cookies["lg_session"]
        ws_url = store.url.replace("http://", "ws://") + "/ws/alerts"
        with connect(ws_url, additional_headers={"Cookie": f"lg_session={cookie}"}) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            if ending == "sign-out":
                assert client.post("/logout", data={"csrf_token": csrf}).status_code == 303
            else:
                engine = make_engine(database_url)
                with Session(engine) as session:
                    user = session.exec(select(User).where(User.username == "mia")).one()
                    user.active = False
                    session.add(user)
                    session.commit()
                engine.dispose()
            time.sleep(2.5)  # past the feed's re-check interval
            store.ingest([as_json(alert("lane-1", 8))])
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
