"""Detection frames at the store, over real HTTP on SQLite and PostgreSQL: a lane's frame is
checked (a JPEG of the size it declares, every box inside it) and stored once, privately, with
its boxes, for the lane that sent it; a bad frame is refused alone, naming its problem; a lane
is held to its frame quota; frames past their retention go, rows and files."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from alembic import command
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import inspect
from sqlmodel import Session, col, select

from laneguard.wire import FrameBox, FrameMessage
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.app import create_app
from store_server.db import alembic_config, current_revision, head_revision, migrate
from store_server.ingest_store import store_one_by_one
from store_server.media import MediaStore
from store_server.models import AlertRecord, AuditEntry, DetectionFrame, SampleRecord
from store_server.retention import RETENTION_USER, purge_expired_evidence, purge_expired_frames
from store_server.services import StoreApp
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, serve
from tests.helpers.messages import NOW, alert, as_json, b64, jpeg, sample, transaction

WIDTH, HEIGHT = 160, 120
TOKEN = "scrape-token-for-the-frame-tests"


def frame_jpeg(seed: int = 0, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A real JPEG of ``width`` x ``height`` (noise: each seed a different file)."""
    image = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", image)
    assert ok
    return encoded.tobytes()


def boxes() -> list[FrameBox]:
    """Two boxes as an honest transaction's frame has them, one touching the frame's edge."""
    return [
        FrameBox(
            box=(10.0, 20.0, 60.5, 90.0), label="product", kind="track", score=0.91, track_id=3
        ),
        FrameBox(box=(100.0, 0.0, 160.0, 120.0), label="hand", kind="track", score=0.8),
    ]


def frame(
    lane: str,
    n: int,
    data: bytes,
    captured_at: datetime = NOW,
    width: int = WIDTH,
    height: int = HEIGHT,
) -> FrameMessage:
    """Frame ``n`` of ``lane``'s transaction ``n``, as a lane's outbox sends it."""
    return FrameMessage(
        message_id=f"{lane}:frame:{n}",
        lane_id=lane,
        transaction_id=str(n),
        reason="honest",
        captured_at=captured_at,
        model_version="bootstrap-8",
        width=width,
        height=height,
        boxes=boxes(),
        frame_jpeg_b64=b64(data),
    )


def with_box(message: FrameMessage, index: int, box: list[float]) -> dict[str, Any]:
    """``message`` as JSON with box ``index`` replaced (by anything: the wire schema does not
    know the frame's size, the store checks boxes against it)."""
    raw: dict[str, Any] = as_json(message)
    raw["boxes"][index]["box"] = box
    return raw


@dataclass
class Store:
    url: str
    database_url: str
    media: MediaStore
    app: StoreApp
    lane_1: str
    lane_2: str

    def deliver(self, credential: str, *messages: object) -> httpx.Response:
        """POST the messages as the lane whose credential this is. The body is written here,
        NaN allowed, so a test can send what a broken lane would."""
        body = {"messages": [m if isinstance(m, dict) else as_json(m) for m in messages]}
        return httpx.post(
            f"{self.url}/api/v1/ingest",
            content=json.dumps(body),
            headers={"Authorization": f"Bearer {credential}", "Content-Type": "application/json"},
            timeout=20,
        )

    def frames(self) -> list[DetectionFrame]:
        engine = make_engine(self.database_url)
        with Session(engine) as session:
            rows = list(session.exec(select(DetectionFrame).order_by(col(DetectionFrame.id))))
        engine.dispose()
        return rows

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        reply = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status_code == 200, reply.text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.text)
            for s in family.samples
        }


@contextmanager
def running_store(database_url: str, data_dir: Path, **settings: Any) -> Iterator[Store]:
    """A real store server on ``database_url`` with lane-1 and lane-2 enrolled."""
    engine = make_engine(database_url)
    migrate(engine)
    engine.dispose()
    app = create_app(
        StoreSettings(
            database_url=database_url, data_dir=data_dir, metrics_tokens=[TOKEN], **settings
        )
    )
    assert isinstance(app, StoreApp)
    with serve(app) as url:
        yield Store(
            url,
            database_url,
            MediaStore(data_dir / "media"),
            app,
            enrol(url, database_url, "lane-1"),
            enrol(url, database_url, "lane-2"),
        )


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    with running_store(database_url, tmp_path / "data") as running:
        yield running


def results(reply: httpx.Response) -> list[tuple[str, str | None]]:
    assert reply.status_code == 200, reply.text
    return [(r["status"], r["error"]) for r in reply.json()["results"]]


def test_a_frame_is_stored_once_with_its_boxes_in_a_private_file(store: Store) -> None:
    data = frame_jpeg(1)
    sent = frame("lane-1", 1, data)
    before = utcnow()
    assert results(store.deliver(store.lane_1, sent)) == [("stored", None)]
    assert results(store.deliver(store.lane_1, sent)) == [("duplicate", None)]

    [row] = store.frames()
    assert (row.lane_id, row.message_id, row.transaction_id) == ("lane-1", "lane-1:frame:1", "1")
    assert (row.reason, row.model_version, row.review) == ("honest", "bootstrap-8", "pending")
    assert (row.width, row.height) == (WIDTH, HEIGHT)
    assert row.captured_at == NOW and row.received_at >= before
    assert row.boxes == [box.model_dump(mode="json") for box in sent.boxes]
    assert [FrameBox.model_validate(box) for box in row.boxes] == sent.boxes
    path = store.media.path(row.image)
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    got = store.scrape()
    total = "laneguard_store_ingest_messages_total"
    assert got[(total, (("kind", "frame"), ("status", "stored")))] == 1
    assert got[(total, (("kind", "frame"), ("status", "duplicate")))] == 1
    assert got[("laneguard_store_detection_frames", (("review", "pending"),))] == 1


def test_the_careful_path_stores_a_frame_once_too(database_url: str, tmp_path: Path) -> None:
    """After a clash between server processes the writer stores message by message: a frame
    there is stored as in a group, and a second delivery is a duplicate."""
    engine = make_engine(database_url)
    migrate(engine)
    media = MediaStore(tmp_path / "media")
    data = frame_jpeg(2)
    for expected in ("stored", "duplicate"):
        with Session(engine) as session:
            [result] = store_one_by_one(session, [(frame("lane-1", 2, data), data)], media)
            session.commit()
        assert result.status == expected
    with Session(engine) as session:
        [row] = session.exec(select(DetectionFrame)).all()
    assert row.lane_id == "lane-1" and media.path(row.image).read_bytes() == data
    engine.dispose()


def test_bad_frames_are_refused_naming_the_problem_and_the_rest_of_the_batch_lands(
    store: Store,
) -> None:
    png = cv2.imencode(".png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))[1].tobytes()
    # Half a pixel past the right edge; upside down; not a number (JSON's NaN, which pydantic
    # takes as a float).
    outside = with_box(frame("lane-1", 4, frame_jpeg(4)), 1, [100.0, 0.0, 160.5, 120.0])
    inverted = with_box(frame("lane-1", 5, frame_jpeg(5)), 0, [60.0, 20.0, 10.0, 90.0])
    not_a_number = with_box(frame("lane-1", 6, frame_jpeg(6)), 0, [float("nan"), 20, 60, 90])
    batch = [
        transaction("lane-1", 1),
        frame("lane-1", 1, frame_jpeg(1)),
        frame("lane-1", 2, png),
        frame("lane-1", 3, frame_jpeg(3, width=200, height=100)),
        outside,
        inverted,
        not_a_number,
        sample("lane-1", 1, jpeg(1)),
    ]
    got = results(store.deliver(store.lane_1, *batch))
    assert [status for status, _ in got] == ["stored", "stored", *["rejected"] * 5, "stored"]
    errors = [str(error) for _, error in got[2:7]]
    assert "not a JPEG" in errors[0], errors[0]
    assert "200x100 by its JPEG header" in errors[1] and "says 160x120" in errors[1], errors[1]
    assert errors[2].startswith("boxes.1:") and "outside the 160x120 frame" in errors[2]
    assert errors[3].startswith("boxes.0:") and "outside the 160x120 frame" in errors[3]
    assert errors[4].startswith("boxes.0:") and "nan" in errors[4]
    assert [row.message_id for row in store.frames()] == ["lane-1:frame:1"]


def test_a_lane_is_held_to_its_frame_quota(database_url: str, tmp_path: Path) -> None:
    """Two frames a minute: a bucket of ten. The rest of a flood goes unanswered (the lane
    keeps it queued), then 429; another lane's frames still pass."""
    with running_store(database_url, tmp_path / "data", lane_frames_per_minute=2) as store:
        data = frame_jpeg(7)
        flood = [frame("lane-1", n, data) for n in range(12)]
        first = store.deliver(store.lane_1, *flood)
        assert [status for status, _ in results(first)] == ["stored"] * 10
        assert {r["message_id"] for r in first.json()["results"]} == {
            m.message_id for m in flood[:10]
        }
        again = store.deliver(store.lane_1, *flood[10:])
        assert again.status_code == 429 and int(again.headers["Retry-After"]) >= 1
        assert "quota of frame per minute" in again.json()["detail"]
        theirs = store.deliver(store.lane_2, frame("lane-2", 1, data))
        assert results(theirs) == [("stored", None)]
        held = store.scrape()[
            ("laneguard_store_ingest_messages_total", (("kind", "frame"), ("status", "over_quota")))
        ]
        assert held == 4  # two left out of the flood, two more refused with 429
        assert len(store.frames()) == 11


def test_a_frame_belongs_to_the_lane_whose_credential_sent_it(store: Store) -> None:
    data = frame_jpeg(8)
    posing = store.deliver(store.lane_2, frame("lane-1", 1, data))
    assert posing.status_code == 403 and "lane 'lane-2'" in posing.text, posing.text
    assert posing.json()["detail"]["message_ids"] == ["lane-1:frame:1"]
    assert store.frames() == []

    # Message ids are each lane's own: the same id from both lanes is two frames.
    assert results(store.deliver(store.lane_1, frame("lane-1", 1, data))) == [("stored", None)]
    same_id = frame("lane-2", 1, data).model_copy(update={"message_id": "lane-1:frame:1"})
    assert results(store.deliver(store.lane_2, same_id)) == [("stored", None)]
    assert [(r.lane_id, r.message_id) for r in store.frames()] == [
        ("lane-1", "lane-1:frame:1"),
        ("lane-2", "lane-1:frame:1"),
    ]


def test_retention_deletes_old_frames_and_their_files(store: Store) -> None:
    """Frames captured before frame_retention_days go, rows and files; a file a sample or an
    alert still shows stays; an alert's purge keeps a file a newer frame shows; audited."""
    old = utcnow() - timedelta(days=40)
    old_only, shared_with_sample, newer = frame_jpeg(10), frame_jpeg(11), frame_jpeg(12)
    messages = [
        frame("lane-1", 1, old_only, captured_at=old),
        frame("lane-1", 2, shared_with_sample, captured_at=old),
        # Captured now: within sample retention, whatever day the test runs.
        sample("lane-1", 2, shared_with_sample).model_copy(update={"captured_at": utcnow()}),
        frame("lane-1", 3, newer, captured_at=utcnow() - timedelta(days=2)),
        alert("lane-1", 3, image=newer).model_copy(update={"raised_at": old}),
    ]
    assert {status for status, _ in results(store.deliver(store.lane_1, *messages))} == {"stored"}
    names = {row.message_id: row.image for row in store.frames()}

    engine = make_engine(store.database_url)
    evidence = purge_expired_evidence(engine, store.media, days=30)
    assert (evidence.alerts, evidence.crops) == (1, 0)  # the newer frame still shows that file
    assert store.media.path(names["lane-1:frame:3"]).exists()

    store.app.services.retention.work()  # the server's own run, with its default 30 days
    assert [row.message_id for row in store.frames()] == ["lane-1:frame:3"]
    assert not store.media.path(names["lane-1:frame:1"]).exists()
    assert store.media.path(names["lane-1:frame:2"]).exists()  # the sample's crop
    with Session(engine) as session:
        audit = session.exec(
            select(AuditEntry).where(
                AuditEntry.username == RETENTION_USER, AuditEntry.action == "frames.deleted"
            )
        ).all()
        assert session.exec(select(SampleRecord)).one().image == names["lane-1:frame:2"]
        assert session.exec(select(AlertRecord)).one().evidence is None
    assert len(audit) == 1 and audit[0].target == "2 detection frames"
    assert audit[0].detail["days"] == 30
    assert purge_expired_frames(engine, store.media, days=30).frames == 0
    report = purge_expired_frames(engine, store.media, days=1)
    assert (report.frames, report.frame_files) == (1, 1)
    assert store.frames() == [] and not store.media.path(names["lane-1:frame:3"]).exists()
    engine.dispose()


def test_the_frames_migration_goes_down_and_up_again(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
    assert "detection_frame" not in inspect(engine).get_table_names()
    assert migrate(engine) == head_revision() == current_revision(engine)
    assert "detection_frame" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_frame_settings_default_to_a_minute_and_a_month() -> None:
    settings = StoreSettings()
    assert (settings.lane_frames_per_minute, settings.frame_retention_days) == (60, 30)
