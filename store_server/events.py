"""Store events to MQTT: alerts, lane health changes and rollout steps, for the store's own
systems (paging staff, its own dashboards, a building-management bus).

Topics, under ``laneguard/<store>/`` (``mqtt_store`` in the settings, default the store name
made topic-safe):

    laneguard/<store>/<lane>/alert        AlertEvent: raised, updated at the lane, reviewed
    laneguard/<store>/<lane>/health       LaneHealthEvent: ok / camera down / offline
    laneguard/<store>/rollout             RolloutEvent: started, next stage, paused, done...

Payloads are the wire schema's JSON (laneguard.wire), published with QoS 1. Delivery is at
least once, end to end: an event is first written to a queue on disk (``events.sqlite3`` in
the data folder, 0600) by whoever caused it, and leaves the queue only when the broker has
acknowledged it (PUBACK). While the broker is down or unreachable the store server works as
before and the queue grows (capped, oldest dropped first and counted); when the broker is back
the publisher catches up in order. A subscriber may see an event twice (a PUBACK lost in a
disconnect) and drops it by its ``event_id``.

Lane health and rollout steps are found by watching the database every few seconds, not by
hooking every place that changes them: the watcher publishes each change of a lane's state or a
rollout's (stage, state) once, whether the change came from a heartbeat, the rollout loop or a
manager's click.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel
from sqlalchemy import or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.files import private_file
from laneguard.wire import AlertEvent, LaneHealthEvent, RolloutEvent
from product_db.errors import LaneGuardError
from product_db.models import utcnow
from store_server.background import PeriodicLoop
from store_server.lanes import lane_state
from store_server.models import BundleRelease, LaneHealth, Rollout

log = logging.getLogger("laneguard.server.events")
QUEUE_CAP = 100_000  # events kept while the broker is away (about a week of a busy store)
FINISHED = ("completed", "rolled_back")  # old rollouts are not news after a restart
TOPIC_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class EventSettingsError(LaneGuardError, ValueError):
    """The MQTT settings cannot work; the message says which and why."""


def topic_part(name: str) -> str:
    """A name as one MQTT topic level: no '/', '+', '#' or spaces."""
    part = TOPIC_SAFE.sub("-", name.strip()).strip("-").lower()
    if not part:
        raise EventSettingsError(f"{name!r} leaves nothing usable in an MQTT topic")
    return part[:64]


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise EventSettingsError(
                f"mqtt_url {url!r}: use mqtt://host[:port] or mqtts://host[:port] (TLS)"
            )
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls)


class EventQueue:
    """Events waiting for the broker, on disk, in order."""

    def __init__(self, path: Path, cap: int = QUEUE_CAP) -> None:
        private_file(path)
        self.cap = cap
        self.dropped = 0
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS event (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
            "topic TEXT NOT NULL, payload BLOB NOT NULL, created_at REAL NOT NULL)"
        )
        # Counted once here and kept up to date: a COUNT(*) per event scans the whole queue.
        self._depth = int(self._db.execute("SELECT COUNT(*) FROM event").fetchone()[0])

    def put(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO event (topic, payload, created_at) VALUES (?, ?, ?)",
                (topic, payload, time.time()),
            )
            self._depth += 1
            over = self._depth - self.cap
            if over > 0:
                self._db.execute(
                    "DELETE FROM event WHERE seq IN (SELECT seq FROM event ORDER BY seq LIMIT ?)",
                    (over,),
                )
                self._depth -= over
                self.dropped += over
                log.warning("event queue over %d: dropped the %d oldest", self.cap, over)

    def oldest(self, limit: int) -> list[tuple[int, str, bytes]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM event ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [(int(seq), str(topic), bytes(payload)) for seq, topic, payload in rows]

    def done(self, seqs: list[int]) -> None:
        if not seqs:
            return
        with self._lock:
            deleted = self._db.executemany("DELETE FROM event WHERE seq = ?", [(s,) for s in seqs])
            self._depth -= deleted.rowcount

    def depth(self) -> int:
        with self._lock:
            return self._depth

    def close(self) -> None:
        with self._lock:
            self._db.close()


class MqttPublisher:
    """Drains the queue to the broker with QoS 1, deleting each event once it is acknowledged.
    Reconnects on its own (paho's loop, backoff up to 30 s); never blocks whoever queues."""

    def __init__(
        self,
        queue: EventQueue,
        address: BrokerAddress,
        client_id: str,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        ack_timeout_s: float = 5.0,
    ) -> None:
        import paho.mqtt.client as mqtt

        self.queue, self.address, self.ack_timeout_s = queue, address, ack_timeout_s
        self.published = 0
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if username is not None:
            client.username_pw_set(username, password)
        if address.tls:
            client.tls_set(ca_certs=str(ca_file) if ca_file else None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        self._thread = threading.Thread(target=self._run, name="mqtt-publisher", daemon=True)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        self.client.connect_async(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()
        self._thread.start()

    def wake(self) -> None:
        """Something was queued: send it now rather than at the next poll."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            log.info("connected to the MQTT broker %s:%d", self.address.host, self.address.port)
            self._connected.set()
            self._wake.set()
        else:
            log.warning("the MQTT broker refused the connection: %s", reason)

    def _on_disconnect(self, *_args: Any) -> None:
        if self._connected.is_set() and not self._stop.is_set():
            log.warning("lost the MQTT broker; events wait on disk until it is back")
        self._connected.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(timeout=1.0)
            self._wake.clear()
            while self.connected and not self._stop.is_set():
                batch = self.queue.oldest(200)
                if not batch:
                    break
                acknowledged = self._send(batch)
                self.queue.done(acknowledged)
                if len(acknowledged) < len(batch):
                    break  # the broker went away mid-batch: wait for the reconnect

    def _send(self, batch: list[tuple[int, str, bytes]]) -> list[int]:
        """Publish a batch in order; the seqs the broker acknowledged, a prefix of the batch."""
        infos = [(seq, self.client.publish(topic, payload, qos=1)) for seq, topic, payload in batch]
        acknowledged = []
        for seq, info in infos:
            try:
                info.wait_for_publish(timeout=self.ack_timeout_s)
            except (RuntimeError, ValueError):  # not queued: the connection is gone
                break
            if not info.is_published():
                break
            acknowledged.append(seq)
        self.published += len(acknowledged)
        return acknowledged


class StoreEvents:
    """What the rest of the server calls: builds each event, queues it, wakes the publisher."""

    def __init__(
        self, store: str, queue: EventQueue, on_queued: Callable[[], None] | None = None
    ) -> None:
        self.store, self.queue, self.on_queued = topic_part(store), queue, on_queued
        self.prefix = f"laneguard/{self.store}"

    def _put(self, topic: str, event: BaseModel) -> None:
        self.queue.put(f"{self.prefix}/{topic}", event.model_dump_json().encode())
        if self.on_queued is not None:
            self.on_queued()

    def _common(self) -> dict[str, Any]:
        return {"event_id": uuid.uuid4().hex, "store": self.store, "at": utcnow()}

    def alert(self, feed_event: dict[str, Any]) -> None:
        """An alert the live feed carries (ingest stored it: raised or changed at the lane)."""
        if feed_event.get("type") != "alert":
            return
        lane = topic_part(str(feed_event["lane_id"]))
        change = "raised" if feed_event.get("status") == "open" else "updated"
        fields = {k: feed_event.get(k) for k in AlertEvent.model_fields if k in feed_event}
        fields.pop("type", None)
        self._put(f"{lane}/alert", AlertEvent(**{**fields, **self._common(), "change": change}))

    def alert_reviewed(self, alert: Any) -> None:
        """A manager's review of an alert (store_server.models.AlertRecord)."""
        event = AlertEvent(
            **self._common(),
            change="reviewed",
            alert_id=alert.alert_id,
            lane_id=alert.lane_id,
            alert_type=alert.alert_type,
            severity=alert.severity,
            status=alert.status,
            value_minor=alert.value_minor,
            seen_code=alert.seen_code,
            scanned_code=alert.scanned_code,
            review=alert.review,
            reviewed_by=alert.reviewed_by,
        )
        self._put(f"{topic_part(alert.lane_id)}/alert", event)

    def lane_health(self, lane_id: str, state: str, previous: str | None, version: str) -> None:
        event = LaneHealthEvent(
            **self._common(),
            lane_id=lane_id,
            state=state,
            previous=previous,
            model_version=version,
        )
        self._put(f"{topic_part(lane_id)}/health", event)

    def rollout(self, rollout: Rollout, version: str) -> None:
        stages = rollout.stages or []
        name = stages[rollout.stage].get("name") if rollout.stage < len(stages) else None
        event = RolloutEvent(
            **self._common(),
            rollout_id=int(rollout.id or 0),
            version=version,
            stage=rollout.stage,
            stage_name=str(name) if name is not None else None,
            state=rollout.state,
        )
        self._put("rollout", event)


class StateWatcher(PeriodicLoop):
    """Every ``every_s``: each lane's state and each rollout's (stage, state); a change is an
    event. What it saw is kept in memory only: after a restart the first pass reports every
    lane and every unfinished rollout once (a subscriber starting fresh learns the current
    state; finished rollouts are not news)."""

    def __init__(self, engine: Engine, events: StoreEvents, every_s: float = 2.0) -> None:
        self.engine, self.events = engine, events
        self._lanes: dict[str, str] = {}
        self._rollouts: dict[int, tuple[int, str]] = {}
        super().__init__("event-watcher", self.run_once, every_s, first_s=0.0)

    def run_once(self) -> None:
        now = utcnow()
        with Session(self.engine) as session:
            beats = list(session.exec(select(LaneHealth)))
            # Unfinished rollouts, and those this watcher last saw unfinished (to report the end):
            # finished ones never change again, so they are not read every pass.
            watching = [key for key, (_, state) in self._rollouts.items() if state not in FINISHED]
            rollouts = session.exec(
                select(Rollout, BundleRelease.version)
                .join(BundleRelease, col(Rollout.release_id) == col(BundleRelease.id))
                .where(or_(col(Rollout.state).not_in(FINISHED), col(Rollout.id).in_(watching)))
            ).all()
        for beat in beats:
            state = lane_state(beat, now)
            previous = self._lanes.get(beat.lane_id)
            if state != previous:
                self._lanes[beat.lane_id] = state
                self.events.lane_health(beat.lane_id, state, previous, beat.model_version)
        for rollout, version in rollouts:
            step = (rollout.stage, rollout.state)
            key = int(rollout.id or 0)
            known = self._rollouts.get(key)
            if known != step:
                self.events.rollout(rollout, version)
            self._rollouts[key] = step
