"""The lane's outbox, the uploader and the store server's ingest, over real HTTP and real
databases: idempotency, validation, the disk cap's drop order, and an outage mid-run."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlmodel import Session, func, select

from checkout_node.outbox import KINDS, Outbox, OutboxError
from checkout_node.uploader import Enrolment, Uploader
from product_db.db import make_engine
from store_server.app import create_app
from store_server.lanes import CredentialCache, retire
from store_server.models import AlertRecord, Lane, LaneHealth, SampleRecord, TransactionRecord
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, enrolment_token, free_port, serve
from tests.helpers.messages import NOW, alert, as_json, b64, heartbeat, jpeg, sample, transaction


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[tuple[str, str, Path, str]]:
    """A running store server with lane-1 enrolled; yields its credential last."""
    settings = StoreSettings(
        database_url=database_url,
        data_dir=tmp_path / "store",
        lane_transactions_per_minute=600,  # these tests send bursts of hundreds; quotas: below
    )
    with serve(create_app(settings)) as url:
        yield url, database_url, tmp_path / "store", enrol(url, database_url, "lane-1")


def count(database_url: str, table: type) -> int:
    engine = make_engine(database_url)
    with Session(engine) as session:
        n = session.exec(select(func.count()).select_from(table)).one()
    engine.dispose()
    return int(n)


def test_ingest_stores_each_kind_once_and_refuses_bad_messages_alone(
    store: tuple[str, str, Path, str],
) -> None:
    url, database_url, data_dir, credential = store
    crop = jpeg(1)
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    good = [
        as_json(transaction("lane-1", 1)),
        as_json(alert("lane-1", 1, image=crop)),
        as_json(sample("lane-1", 1, crop)),
        as_json(heartbeat("lane-1", NOW, 29.5)),
    ]
    bad_image = as_json(sample("lane-1", 2, crop))
    bad_image["crop_jpeg_b64"] = b64(png)
    bad_id = as_json(transaction("lane-1", 3))
    bad_id["message_id"] = "../../etc/passwd"
    lane = {"Authorization": f"Bearer {credential}"}
    with httpx.Client(base_url=url, timeout=10, headers=lane) as client:
        reply = client.post("/api/v1/ingest", json={"messages": [*good, bad_image, bad_id]})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert (body["stored"], body["duplicates"], body["rejected"]) == (4, 0, 2)
        errors = [r["error"] for r in body["results"] if r["status"] == "rejected"]
        assert "not a JPEG" in errors[0] and "message_id" in errors[1]
        again = client.post("/api/v1/ingest", json={"messages": good}).json()
        assert (again["stored"], again["duplicates"]) == (0, 4)
        resolved = client.post(
            "/api/v1/ingest", json={"messages": [as_json(alert("lane-1", 1, "resolved"))]}
        ).json()
        assert resolved["stored"] == 1
        late_open = client.post(  # an older report arriving late changes nothing
            "/api/v1/ingest", json={"messages": [as_json(alert("lane-1", 1, "open"))]}
        ).json()
        assert late_open["duplicates"] == 1
        assert client.post("/api/v1/ingest", json={"messages": []}).status_code == 422
        assert client.post("/api/v1/ingest", content=b"not json").status_code == 422
    engine = make_engine(database_url)
    with Session(engine) as session:
        record = session.get(AlertRecord, "lane-1-a1")
        assert record is not None and record.status == "resolved"
        assert record.resolution == "rescanned" and record.evidence
        stored = data_dir / "media" / record.evidence[:2] / record.evidence
        assert stored.read_bytes() == crop
        sample_row = session.exec(select(SampleRecord)).one()
        assert sample_row.image == record.evidence  # the same crop is stored once
        health = session.get(LaneHealth, "lane-1")
        assert health is not None and health.fps == 29.5
    engine.dispose()
    assert count(database_url, TransactionRecord) == 1


def test_a_lane_credential_speaks_for_its_own_lane_only(
    store: tuple[str, str, Path, str],
) -> None:
    url, database_url, _data_dir, credential = store
    message = {"messages": [as_json(transaction("lane-1", 9))]}
    assert httpx.post(f"{url}/api/v1/ingest", json=message).status_code == 401
    wrong = httpx.post(
        f"{url}/api/v1/ingest", json=message, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and "not recognised" in wrong.text
    other = enrol(url, database_url, "lane-2")
    reply = httpx.post(
        f"{url}/api/v1/ingest", json=message, headers={"Authorization": f"Bearer {other}"}
    )
    assert reply.status_code == 403 and "credential is lane 'lane-2'" in reply.text
    assert reply.json()["detail"]["message_ids"] == ["lane-1:tx:9"]
    assert count(database_url, TransactionRecord) == 0
    config = httpx.get(f"{url}/api/v1/lane/config", headers={"Authorization": f"Bearer {other}"})
    assert config.json()["lane_id"] == "lane-2" and config.json()["config"]["currency"] == "EUR"

    token = enrolment_token(database_url, "lane-3")
    assert httpx.post(f"{url}/api/v1/enrol", json={"token": token}).status_code == 200
    again = httpx.post(f"{url}/api/v1/enrol", json={"token": token})
    assert again.status_code == 403 and "already used" in again.text
    engine = make_engine(database_url)
    with Session(engine) as session:
        retire(session, "lane-1")
        session.commit()
    engine.dispose()
    retired = httpx.post(
        f"{url}/api/v1/ingest", json=message, headers={"Authorization": f"Bearer {credential}"}
    )
    assert retired.status_code == 401


def test_outbox_orders_by_importance_and_survives_reopening(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3")
    assert box.put("sample", "s1", b"{}")
    assert box.put("transaction", "t1", b"{}")
    assert box.put("alert", "a1", b"{}")
    assert not box.put("alert", "a1", b"{}")  # same id: queued once
    with pytest.raises(OutboxError, match="unknown message kind"):
        box.put("selfie", "x", b"{}")
    box.close()
    box = Outbox(tmp_path / "outbox.sqlite3")
    assert [e.message_id for e in box.due()] == ["a1", "t1", "s1"]
    box.delivered(["a1"])
    assert not box.put("alert", "a1", b"{}")  # delivered ids are remembered
    box.retry_later(["t1"], "server down", delay_s=60)
    assert [e.message_id for e in box.due()] == ["s1"]
    box.close()


def test_disk_cap_drops_heartbeats_then_oldest_samples_never_alerts(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.sqlite3", cap_bytes=1000)
    box.put("heartbeat", "h1", b"x" * 50)
    box.put("heartbeat", "h2", b"x" * 50)  # replaces h1
    for n in range(5):
        box.put("sample", f"s{n}", b"x" * 200)
    assert box.depth()["heartbeat"] == 1 and box.depth()["sample"] == 4  # s0 dropped
    for n in range(4):
        box.put("alert", f"a{n}", b"x" * 300)
    depth = box.depth()
    assert depth["alert"] == 4 and depth["sample"] == 0 and depth["heartbeat"] == 0
    assert box.over_cap  # 1200 bytes of alerts: kept, and the outbox says it is over its cap
    assert box.dropped["sample"] == 5 and box.dropped["heartbeat"] == 2
    box.close()


@pytest.mark.timeout(180)
def test_store_server_down_mid_run_loses_nothing(tmp_path: Path) -> None:
    """200 transactions (every 10th with an alert, each with a sample); the store server is
    stopped for a stretch in the middle of the run and comes back on the same address."""
    database_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    settings = StoreSettings(database_url=database_url, data_dir=tmp_path / "store")
    port = free_port()
    box = Outbox(tmp_path / "lane" / "outbox.sqlite3")
    uploader = Uploader(
        box,
        f"http://127.0.0.1:{port}",
        batch=50,
        max_backoff_s=1.0,
        timeout_s=2.0,
        enrolment=Enrolment(enrolment_token(database_url, "lane-7"), tmp_path / "lane", "lane-7"),
    )
    crop = jpeg(2)
    produced = threading.Event()

    def lane() -> None:
        for n in range(200):
            batch = [("transaction", f"lane-7:tx:{n}", transaction("lane-7", n).model_dump_json())]
            if n % 10 == 0:
                message = alert("lane-7", n, image=crop)
                batch.append(("alert", message.message_id, message.model_dump_json()))
            message = sample("lane-7", n, crop)
            batch.append(("sample", message.message_id, message.model_dump_json()))
            box.put_many((k, i, p.encode()) for k, i, p in batch)
            time.sleep(0.03)
        produced.set()

    producer = threading.Thread(target=lane)
    uploader.start()
    with serve(create_app(settings), port=port):
        producer.start()
        time.sleep(1.5)
    outage_started = time.monotonic()
    time.sleep(4.0)  # store server down while the lane keeps checking out customers
    assert uploader.failures > 0 and box.depth()["transaction"] > 0
    with serve(create_app(settings), port=port):
        produced.wait(60)
        deadline = time.monotonic() + 60
        while any(box.depth().values()) and time.monotonic() < deadline:
            time.sleep(0.2)
    uploader.stop()
    assert time.monotonic() - outage_started > 4.0
    assert set(box.depth().values()) == {0} and set(box.depth()) == set(KINDS)
    assert box.dead_letters() == []
    assert count(database_url, TransactionRecord) == 200
    assert count(database_url, AlertRecord) == 20
    assert count(database_url, SampleRecord) == 200
    box.close()


def test_concurrent_lanes_are_stored_once_through_grouped_writes(
    store: tuple[str, str, Path, str],
) -> None:
    """Twenty requests at once, overlapping: the writer groups them into shared database
    transactions and each message is still stored exactly once."""
    url, database_url, _data_dir, credential = store
    lane = {"Authorization": f"Bearer {credential}"}
    batches = [
        [as_json(transaction("lane-1", n)) for n in range(start, start + 10)]
        for start in range(0, 100, 5)  # each batch overlaps the next by half
    ]
    replies: list[dict[str, Any]] = []

    def send(batch: list[dict[str, Any]]) -> None:
        reply = httpx.post(f"{url}/api/v1/ingest", json={"messages": batch}, headers=lane)
        replies.append(reply.json())

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["stored"] for r in replies) == 105
    assert count(database_url, TransactionRecord) == 105
    assert sum(r["duplicates"] for r in replies) == 200 - 105


@pytest.mark.postgres
def test_two_store_server_processes_clash_and_still_store_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two servers on one PostgreSQL database take the same messages at the same moment:
    unique keys clash, the losing group falls back to one-by-one and answers duplicates."""
    apps = [
        create_app(
            StoreSettings(
                database_url=postgres_url,
                data_dir=tmp_path / f"s{n}",
                lane_transactions_per_minute=600,  # 200 at once, twice per server
            )
        )
        for n in range(2)
    ]
    with serve(apps[0]) as first, serve(apps[1]) as second:
        credential = enrol(first, postgres_url, "lane-1")
        lane = {"Authorization": f"Bearer {credential}"}
        batch = [as_json(transaction("lane-1", n)) for n in range(200)]
        replies: list[dict[str, Any]] = []

        def send(base: str) -> None:
            reply = httpx.post(
                f"{base}/api/v1/ingest", json={"messages": batch}, headers=lane, timeout=30
            )
            replies.append(reply.json())

        threads = [threading.Thread(target=send, args=(b,)) for b in (first, second) * 2]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert sum(r["stored"] for r in replies) == 200
    assert sum(r["duplicates"] for r in replies) == 600
    assert count(postgres_url, TransactionRecord) == 200


def test_a_lane_over_its_quota_is_held_to_it_and_loses_nothing(
    database_url: str, tmp_path: Path
) -> None:
    """A lane flooding samples and transactions: what fits its buckets is stored, the rest is
    left unanswered (its uploader keeps it queued), a request of which nothing fits gets 429
    with Retry-After, each held-back message is counted, and another lane is not affected."""
    settings = StoreSettings(
        database_url=database_url,
        data_dir=tmp_path / "store",
        lane_transactions_per_minute=2,  # buckets of ten
        lane_samples_per_minute=4,  # and of twenty
        metrics_tokens=["scrape-token-for-this-test-123"],
    )
    with serve(create_app(settings)) as url:
        flooding = {"Authorization": f"Bearer {enrol(url, database_url, 'lane-1')}"}
        other = {"Authorization": f"Bearer {enrol(url, database_url, 'lane-2')}"}
        crop = jpeg(3)
        flood = [as_json(transaction("lane-1", n)) for n in range(14)]
        flood += [as_json(sample("lane-1", n, crop)) for n in range(25)]
        with httpx.Client(base_url=url, timeout=10) as client:
            first = client.post("/api/v1/ingest", json={"messages": flood}, headers=flooding)
            assert first.status_code == 200, first.text
            answered = {r["message_id"] for r in first.json()["results"]}
            assert first.json()["stored"] == 30 == len(answered)
            assert {m["message_id"] for m in flood[:10] + flood[14:34]} == answered
            again = client.post("/api/v1/ingest", json={"messages": flood[10:]}, headers=flooding)
            assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1
            assert "quota" in again.json()["detail"]
            heartbeats = client.post(  # kinds without a quota still pass
                "/api/v1/ingest",
                json={"messages": [as_json(heartbeat("lane-1", NOW, 30.0))]},
                headers=flooding,
            )
            assert heartbeats.json()["stored"] == 1
            theirs = client.post(
                "/api/v1/ingest",
                json={"messages": [as_json(transaction("lane-2", 1))]},
                headers=other,
            )
            assert theirs.json()["stored"] == 1
            metrics = client.get(
                "/metrics", headers={"Authorization": "Bearer scrape-token-for-this-test-123"}
            ).text
    assert count(database_url, TransactionRecord) == 11
    assert count(database_url, SampleRecord) == 20
    held = 'laneguard_store_ingest_messages_total{kind="sample",status="over_quota"} 30.0'
    assert held in metrics


def test_a_lane_retired_by_another_server_process_is_refused_once_its_cache_entry_expires(
    store: tuple[str, str, Path, str],
) -> None:
    """Each server process caches credentials; a retirement made through another process
    (a second worker, the CLI) does not reach this process's cache, so entries expire."""
    url, database_url, _data_dir, _credential = store
    other = enrol(url, database_url, "lane-5")
    engine = make_engine(database_url)
    cache = CredentialCache(ttl_s=0.3)  # this process's, as another worker's would be
    assert cache.lane_for(engine, other) == "lane-5"
    with Session(engine) as session:  # retired elsewhere: this cache is not told
        lane = session.get(Lane, "lane-5")
        assert lane is not None
        lane.active = False
        session.add(lane)
        session.commit()
    assert cache.lane_for(engine, other) == "lane-5"  # within the cache's lifetime
    time.sleep(0.4)
    assert cache.cached(other) is None and cache.lane_for(engine, other) is None
    engine.dispose()


def test_a_forged_or_replayed_stored_reply_removes_nothing_from_the_outbox(
    store: tuple[str, str, Path, str], tmp_path: Path
) -> None:
    """A man in the middle of plain HTTP answered "stored" for alerts the store never saw,
    and the lane dropped them. The lane now deletes only on the store's signed receipt for the
    batch it sent."""
    url, database_url, _data_dir, _credential = store
    box = Outbox(tmp_path / "lane" / "outbox.sqlite3")
    enrolling = Uploader(
        box,
        url,
        enrolment=Enrolment(enrolment_token(database_url, "lane-8"), tmp_path / "lane", "lane-8"),
    )
    first = alert("lane-8", 1)
    box.put("alert", first.message_id, first.model_dump_json().encode())
    assert enrolling.deliver_once().delivered == 1  # enrolled: it knows the store's key now
    captured = httpx.post(  # a genuine receipt, for another batch, to replay
        f"{url}/api/v1/ingest",
        json={"messages": [as_json(alert("lane-8", 2))]},
        headers={"Authorization": f"Bearer {enrolling.token}"},
    ).json()
    forger = FastAPI()
    # what each forged reply carries as its receipt; "refused": a 422 as if the batch were bad
    kinds = ["none", "replayed", "altered", "refused"]

    @forger.post("/api/v1/ingest", response_model=None)
    async def forged(request: Request) -> dict[str, object] | JSONResponse:
        ids = [m["message_id"] for m in json.loads(await request.body())["messages"]]
        results = [{"message_id": i, "status": "stored", "error": None} for i in ids]
        replayed = dict(captured["receipt"], results=[[i, "stored"] for i in ids])
        kind = kinds.pop(0)
        if kind == "refused":
            return JSONResponse({"detail": "messages.0: invalid"}, status_code=422)
        receipt = {"none": None, "replayed": captured["receipt"], "altered": replayed}[kind]
        return {"stored": len(ids), "duplicates": 0, "rejected": 0, "results": results,
                "receipt": receipt}  # fmt: skip

    third = alert("lane-8", 3)
    box.put("alert", third.message_id, third.model_dump_json().encode())
    with serve(forger) as forger_url:
        lane = Uploader(box, forger_url, enrolling.token, store_key_pem=enrolling.store_key_pem,
                        lane_id="lane-8", first_backoff_s=0.0)  # fmt: skip
        for _ in range(4):
            box.retry_later([third.message_id], "", 0.0)
            report = lane.deliver_once()
            assert report.delivered == 0 and report.failed == 1, report
            assert "not to be trusted" in (report.error or "") or "did not sign" in (
                report.error or ""
            )
    assert box.depth()["alert"] == 1 and box.dead_letters() == []  # still queued
    honest = Uploader(box, url, enrolling.token, store_key_pem=enrolling.store_key_pem,
                      lane_id="lane-8")  # fmt: skip
    box.retry_later([third.message_id], "", 0.0)
    assert honest.deliver_once().delivered == 1 and box.depth()["alert"] == 0
    # A batch the store itself refuses comes with its signed refusal: moved aside as before.
    box.put("alert", "lane-8:bad", b'{"type": "alert", "message_id": "lane-8:bad"}')
    assert honest.deliver_once().rejected == 1 and len(box.dead_letters()) == 1
    assert count(database_url, AlertRecord) == 3
    box.close()
