"""Store events over MQTT with real Mosquitto brokers: the machine's own on 1883, and a private
one on a free port that the tests stop and start, to show the store server working on while
the broker is away and every event arriving after it is back."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session

from laneguard.serving import free_port
from laneguard.wire import AlertEvent, LaneHealthEvent
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.app import create_app
from store_server.auth import create_user
from store_server.db import migrate
from store_server.events import BrokerAddress, EventSettingsError, topic_part
from store_server.models import LaneHealth
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, serve, sign_in
from tests.helpers.messages import NOW, alert, as_json, heartbeat

MOSQUITTO = "/usr/sbin/mosquitto"


class Subscriber:
    """A QoS 1 subscriber with a persistent session: what a store's own system would run."""

    def __init__(self, port: int, topic: str) -> None:
        self.events: list[dict[str, object]] = []
        self.topics: list[str] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{uuid.uuid4().hex[:8]}",
            clean_session=False,
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"

    def _message(self, _client: object, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.events.append(json.loads(message.payload))
            self.topics.append(message.topic)

    def wait_for(self, count: int, timeout: float = 90.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len({e["event_id"] for e in self.events}) >= count:
                    return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"{len(self.events)} events of {count}: {self.events}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _store(database_url: str, tmp_path: Path, mqtt_url: str, store: str) -> StoreSettings:
    engine = make_engine(database_url)
    migrate(engine)
    create_user(engine, "mia", "manager-pass", "manager")
    engine.dispose()
    return StoreSettings(
        database_url=database_url, data_dir=tmp_path / "store", mqtt_url=mqtt_url, mqtt_store=store
    )


def _queued(tmp_path: Path) -> int:
    """Events waiting in the store's disk queue for the broker's acknowledgement."""
    with contextlib.closing(sqlite3.connect(tmp_path / "store" / "events.sqlite3")) as db:
        return int(db.execute("SELECT COUNT(*) FROM event").fetchone()[0])


def _ingest(url: str, credential: str, messages: list[dict[str, object]]) -> None:
    reply = httpx.post(
        f"{url}/api/v1/ingest",
        json={"messages": messages},
        headers={"Authorization": f"Bearer {credential}"},
        timeout=10,
    )
    assert reply.status_code == 200 and reply.json()["stored"] == len(messages), reply.text


def test_alerts_and_lane_health_reach_a_subscriber_once_each(
    database_url: str, tmp_path: Path
) -> None:
    store = f"store-{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(1883, f"laneguard/{store}/#")
    settings = _store(database_url, tmp_path, "mqtt://127.0.0.1:1883", store)
    with serve(create_app(settings)) as url:
        credential = enrol(url, database_url, "lane-1")
        _ingest(url, credential, [as_json(heartbeat("lane-1", NOW, 24.0))])
        _ingest(url, credential, [as_json(alert("lane-1", 1))])
        _ingest(url, credential, [as_json(alert("lane-1", 1, "resolved"))])
        with httpx.Client(base_url=url) as client:
            csrf = sign_in(client, "mia", "manager-pass")
            alert_id = alert("lane-1", 1).alert_id
            reply = client.post(
                f"/alerts/{alert_id}/review", data={"review": "recovered", "csrf_token": csrf}
            )
            assert reply.status_code == 303, reply.text
        events = subscriber.wait_for(4)
    subscriber.close()
    by_type = {(e["type"], e.get("change")): e for e in events}
    assert len(events) == len({e["event_id"] for e in events}) == 4  # each once
    health = LaneHealthEvent.model_validate(by_type[("lane_health", None)])
    assert (health.lane_id, health.state, health.previous) == ("lane-1", "ok", None)
    raised = AlertEvent.model_validate(by_type[("alert", "raised")])
    assert (raised.alert_id, raised.status, raised.store) == (alert_id, "open", store)
    assert by_type[("alert", "updated")]["status"] == "resolved"
    reviewed = AlertEvent.model_validate(by_type[("alert", "reviewed")])
    assert (reviewed.review, reviewed.reviewed_by) == ("recovered", "mia")
    topics = set(subscriber.topics)
    assert topics == {f"laneguard/{store}/lane-1/alert", f"laneguard/{store}/lane-1/health"}


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A Mosquitto on a free port, with persistence (a restart keeps sessions and queued
    QoS 1 messages, as a store's broker would be set up); started by the test."""
    port = free_port()
    config = tmp_path / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
        f"persistence_location {tmp_path}/\nautosave_interval 1\n",
        "utf-8",
    )
    yield port, config


class Broker:
    def __init__(self, config: Path, port: int) -> None:
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            try:
                probe.connect("127.0.0.1", port)
                probe.disconnect()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        self.process.terminate()  # saves its persistence file on the way out
        self.process.wait(timeout=10)


def test_the_server_works_while_the_broker_is_down_and_catches_up(
    private_broker: tuple[int, Path], tmp_path: Path
) -> None:
    port, config = private_broker
    database_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    store = f"store-{uuid.uuid4().hex[:8]}"
    broker = Broker(config, port)
    subscriber = Subscriber(port, f"laneguard/{store}/+/alert")  # its session outlives restarts
    subscriber.close()
    broker.stop()
    settings = _store(database_url, tmp_path, f"mqtt://127.0.0.1:{port}", store)
    with serve(create_app(settings)) as url:
        credential = enrol(url, database_url, "lane-1")
        # No broker at all: ingest answers as always; the events wait on disk.
        started = time.perf_counter()
        _ingest(url, credential, [as_json(alert("lane-1", n)) for n in range(5)])
        assert time.perf_counter() - started < 2.0
        assert (tmp_path / "store" / "events.sqlite3").stat().st_mode & 0o777 == 0o600
        broker = Broker(config, port)
        subscriber = Subscriber(port, f"laneguard/{store}/+/alert")
        first = subscriber.wait_for(5)
        # The broker goes away mid-stream and comes back: the events wait on disk and every one
        # is handed to the broker (acknowledged, so off the queue) once it is back. Whether a
        # subscriber then gets them is the broker's part: a restarted Mosquitto routes to a
        # persistent session only once that subscriber has reconnected (measured: a message
        # published before that is not delivered), and the store reconnects first under load.
        broker.stop()
        _ingest(url, credential, [as_json(alert("lane-1", n)) for n in range(5, 12)])
        waited = time.monotonic() + 10  # queued by the ingest writer just after it answers
        while _queued(tmp_path) < 7 and time.monotonic() < waited:
            time.sleep(0.05)
        assert _queued(tmp_path) >= 7, "the events did not wait on disk"
        broker = Broker(config, port)
        deadline = time.monotonic() + 60
        while _queued(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _queued(tmp_path) == 0, "the store did not catch up with the broker"
    subscriber.close()
    broker.stop()
    assert {e["alert_id"] for e in first} == {alert("lane-1", n).alert_id for n in range(5)}


def test_bad_mqtt_settings_are_refused_by_name() -> None:
    with pytest.raises(EventSettingsError, match="use mqtt://host"):
        BrokerAddress.parse("http://127.0.0.1:1883")
    assert BrokerAddress.parse("mqtts://broker.store.lan") == BrokerAddress(
        "broker.store.lan", 8883, True
    )
    assert topic_part("LaneGuard demo store") == "laneguard-demo-store"
    assert topic_part("a/b+#c") == "a-b-c"
    with pytest.raises(EventSettingsError, match="nothing usable"):
        topic_part("///")


def test_the_event_queue_keeps_its_depth_and_cap_across_a_restart(tmp_path: Path) -> None:
    from store_server.events import EventQueue

    queue = EventQueue(tmp_path / "events.sqlite3", cap=3)
    for n in range(5):
        queue.put("t", f"e{n}".encode())
    assert queue.depth() == 3 and queue.dropped == 2  # the two oldest went
    oldest = queue.oldest(10)
    assert [payload for _, _, payload in oldest] == [b"e2", b"e3", b"e4"]
    queue.done([oldest[0][0]])
    queue.close()
    again = EventQueue(tmp_path / "events.sqlite3", cap=3)
    assert again.depth() == 2
    assert [payload for _, _, payload in again.oldest(10)] == [b"e3", b"e4"]
    again.close()


def test_a_lane_that_keeps_sending_heartbeats_stays_online_everywhere(
    database_url: str, tmp_path: Path
) -> None:
    """A lane is online by when the store last heard from it: its first heartbeat a minute
    ago (the record made then) and a new one now must read "ok" on the Lanes page, in
    /metrics and in MQTT health, not "offline" from the first one's time."""
    store = f"store-{uuid.uuid4().hex[:8]}"
    subscriber = Subscriber(1883, f"laneguard/{store}/lane-1/health")
    settings = _store(database_url, tmp_path, "mqtt://127.0.0.1:1883", store)
    settings.metrics_tokens = ["scrape-token-for-the-heartbeat-test"]
    with serve(create_app(settings)) as url:
        credential = enrol(url, database_url, "lane-1")
        _ingest(url, credential, [as_json(heartbeat("lane-1", NOW, 24.0))])
        subscriber.wait_for(1)  # "ok", from the first heartbeat
        engine = make_engine(database_url)
        with Session(engine) as session:  # that heartbeat arrived a minute ago
            record = session.get(LaneHealth, "lane-1")
            assert record is not None
            record.last_seen = utcnow() - timedelta(seconds=60)
            session.add(record)
            session.commit()
        engine.dispose()
        subscriber.wait_for(2)  # "offline": nothing heard for a minute
        _ingest(url, credential, [as_json(heartbeat("lane-1", NOW + timedelta(seconds=60), 24.0))])
        events = subscriber.wait_for(3)
        with httpx.Client(base_url=url) as client:
            sign_in(client, "mia", "manager-pass")
            page = client.get("/lanes")
        scraped = httpx.get(
            f"{url}/metrics",
            headers={"Authorization": "Bearer scrape-token-for-the-heartbeat-test"},
        )
    subscriber.close()
    states = [(e["state"], e["previous"]) for e in events]
    assert states == [("ok", None), ("offline", "ok"), ("ok", "offline")]
    assert page.status_code == 200
    assert '<td class="state">ok</td>' in page.text and "offline" not in page.text
    samples = {
        s.name: s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    assert samples["laneguard_store_lanes_online"] == 1.0
