"""Alert clips at the store and evidence retention, over real HTTP on SQLite and PostgreSQL:
a lane's clip is checked and stored privately, shown only beside that lane's alert, played in a
real Chromium; old evidence is deleted (audited) except what a manager keeps."""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser
from sqlmodel import Session, select

from laneguard.wire import MAX_CLIP_B64, Guess
from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.app import create_app
from store_server.auth import create_user
from store_server.cli import server as server_cli
from store_server.db import migrate
from store_server.media import MediaStore
from store_server.models import AlertClip, AlertRecord, AuditEntry, GalleryEntry, SampleRecord
from store_server.retention import RETENTION_USER, purge_expired_evidence, purge_expired_samples
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, serve, sign_in
from tests.helpers.messages import alert, as_json, clip, jpeg, sample, transaction, webm


@dataclass
class Store:
    url: str
    database_url: str
    data_dir: Path
    lane_1: str
    lane_2: str

    def deliver(self, credential: str, *messages: object) -> httpx.Response:
        return httpx.post(
            f"{self.url}/api/v1/ingest",
            json={"messages": [m if isinstance(m, dict) else as_json(m) for m in messages]},
            headers={"Authorization": f"Bearer {credential}"},
            timeout=20,
        )


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    engine = make_engine(database_url)
    migrate(engine)
    import_records(engine, read_catalog_file(SAMPLE_CATALOG).records, source="sample")
    create_user(engine, "mia", "manager-pass", "manager")
    create_user(engine, "ivan", "admin-pass!", "it_admin")
    engine.dispose()
    settings = StoreSettings(database_url=database_url, data_dir=tmp_path / "data")
    with serve(create_app(settings)) as url:
        yield Store(
            url,
            database_url,
            tmp_path / "data",
            enrol(url, database_url, "lane-1"),
            enrol(url, database_url, "lane-2"),
        )


def statuses(reply: httpx.Response) -> list[tuple[str, str | None]]:
    assert reply.status_code == 200, reply.text
    return [(r["status"], r["error"]) for r in reply.json()["results"]]


def test_a_clip_is_checked_stored_privately_and_shown_with_its_own_lanes_alert(
    store: Store, tmp_path: Path
) -> None:
    video = webm(tmp_path, seed=1)
    reply = store.deliver(store.lane_1, alert("lane-1", 1, image=jpeg(1)), clip("lane-1", 1, video))
    assert statuses(reply) == [("stored", None), ("stored", None)]
    assert statuses(store.deliver(store.lane_1, clip("lane-1", 1, video))) == [("duplicate", None)]

    # Lane 2 can neither show a clip beside lane 1's alert nor take its place.
    foreign = store.deliver(store.lane_2, clip("lane-2", 1, webm(tmp_path, 9), "lane-1"))
    assert foreign.status_code == 403 and "another lane" in foreign.text

    bad = [
        as_json(clip("lane-1", 2, b"not a video at all")),
        as_json(clip("lane-1", 3, jpeg(2))),
        as_json(clip("lane-1", 4, video[:300])),
        {**as_json(clip("lane-1", 5, video)), "clip_b64": "A" * (MAX_CLIP_B64 + 4)},
    ]
    results = statuses(store.deliver(store.lane_1, *bad))
    assert [s for s, _ in results] == ["rejected"] * 4
    assert "not a WebM video" in str(results[0][1]) and "not a WebM video" in str(results[1][1])
    cut_short = str(results[2][1])  # refused by its header, or failing to decode after it
    assert "does not decode" in cut_short or "WebM" in cut_short, cut_short
    assert "clip_b64" in str(results[3][1])

    engine = make_engine(store.database_url)
    with Session(engine) as session:
        rows = list(session.exec(select(AlertClip)))
    engine.dispose()
    assert [(r.lane_id, r.alert_id, r.frames) for r in rows] == [("lane-1", "lane-1-a1", 12)]
    assert rows[0].media is not None
    path = MediaStore(store.data_dir / "media").path(rows[0].media)
    assert path.read_bytes() == video
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    with httpx.Client(base_url=store.url, timeout=10) as client:
        assert client.get(f"/media/{rows[0].media}").status_code in (303, 401)
        sign_in(client, "mia", "manager-pass")
        page = client.get("/alerts/lane-1-a1").text
        assert f'<video id="clip" class="clip" src="/media/{rows[0].media}"' in page
        served = client.get(f"/media/{rows[0].media}", headers={"Range": "bytes=0-99"})
        assert served.status_code == 206 and served.headers["content-type"] == "video/webm"
        assert served.content == video[:100]


def test_the_console_plays_the_clip_beside_the_crop(
    browser: Browser, store: Store, tmp_path: Path, artifacts_dir: Path
) -> None:
    reply = store.deliver(
        store.lane_1,
        transaction("lane-1", 1, honest=False),
        alert("lane-1", 1, image=jpeg(4)),
        clip("lane-1", 1, webm(tmp_path, seed=3, frames=16)),
    )
    assert [s for s, _ in statuses(reply)] == ["stored"] * 3
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(store.url + "/")
    page.fill("input[name=username]", "mia")
    page.fill("input[name=password]", "manager-pass")
    page.click("form.login button[type=submit]")
    page.goto(store.url + "/alerts/lane-1-a1")
    # Polled from here: the console's CSP forbids the eval wait_for_function's predicate uses.
    deadline = time.monotonic() + 15
    while not page.evaluate(
        "() => { const v = document.getElementById('clip');"
        " return v.readyState >= 2 && v.currentTime > 0.2; }"
    ):
        assert time.monotonic() < deadline, "the clip did not play"
        page.wait_for_timeout(100)
    drawn = page.evaluate(
        """() => {
        const v = document.getElementById('clip');
        const c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d');
        g.drawImage(v, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let bright = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] + d[i + 1] + d[i + 2] > 300) bright++;
        return [c.width, c.height, bright];
    }"""
    )
    assert drawn[0] == 160 and drawn[1] == 120 and drawn[2] > 200, drawn  # the moving square
    assert page.locator("img.evidence").is_visible()
    page.screenshot(path=str(artifacts_dir / "console-alert-clip.png"))
    page.click("#keep-evidence")
    page.wait_for_selector("#retention:has-text('kept until a manager releases it')")
    page.close()


def test_retention_deletes_old_evidence_except_what_a_manager_keeps(
    store: Store, tmp_path: Path
) -> None:
    old = utcnow() - timedelta(days=40)
    shared_crop = jpeg(13)  # also a training sample's image: the file must stay
    messages = [
        alert("lane-1", 1, image=jpeg(11)).model_copy(update={"raised_at": old}),
        clip("lane-1", 1, webm(tmp_path, seed=11)),
        alert("lane-1", 2, image=jpeg(12)).model_copy(update={"raised_at": old}),
        clip("lane-1", 2, webm(tmp_path, seed=12)),
        alert("lane-1", 3, image=shared_crop).model_copy(update={"raised_at": old}),
        sample("lane-1", 3, shared_crop),
        alert("lane-1", 4, image=jpeg(14)),  # raised a week ago: within retention
        clip("lane-1", 4, webm(tmp_path, seed=14)),
    ]
    assert all(s == "stored" for s, _ in statuses(store.deliver(store.lane_1, *messages)))

    with httpx.Client(base_url=store.url, timeout=10) as client:
        csrf = sign_in(client, "mia", "manager-pass")
        refused = client.post("/alerts/lane-1-a2/keep", data={"keep": "true"})
        assert refused.status_code == 403
        kept = client.post("/alerts/lane-1-a2/keep", data={"keep": "true", "csrf_token": csrf})
        assert kept.status_code == 303
        assert "kept until a manager releases it" in client.get("/alerts/lane-1-a2").text

    engine = make_engine(store.database_url)
    media = MediaStore(store.data_dir / "media")
    with Session(engine) as session:
        before = {a.alert_id: a.evidence for a in session.exec(select(AlertRecord))}
        clips_before = {c.alert_id: c.media for c in session.exec(select(AlertClip))}
    report = purge_expired_evidence(engine, media, days=30)
    assert (report.alerts, report.crops, report.clips, report.kept) == (2, 1, 1, 1)

    with Session(engine) as session:
        alerts = {a.alert_id: a for a in session.exec(select(AlertRecord))}
        clips = {c.alert_id: c for c in session.exec(select(AlertClip))}
        audit = [e for e in session.exec(select(AuditEntry)) if e.username == RETENTION_USER]
        samples = list(session.exec(select(SampleRecord)))
    for purged in ("lane-1-a1", "lane-1-a3"):
        assert alerts[purged].evidence is None and alerts[purged].evidence_deleted_at is not None
    assert clips["lane-1-a1"].media is None
    assert not media.path(str(before["lane-1-a1"])).exists()
    assert not media.path(str(clips_before["lane-1-a1"])).exists()
    assert media.path(str(before["lane-1-a3"])).exists()  # the sample still uses it
    assert samples[0].image == before["lane-1-a3"]
    for untouched in ("lane-1-a2", "lane-1-a4"):  # kept by the manager; within retention
        assert alerts[untouched].evidence == before[untouched]
        assert media.path(str(before[untouched])).exists()
        assert clips[untouched].media == clips_before[untouched]
        assert media.path(str(clips_before[untouched])).exists()
    assert len(audit) == 1 and audit[0].action == "evidence.deleted"
    assert audit[0].detail["crops"] == 2 and audit[0].detail["clips"] == 1
    assert set(audit[0].detail["alert_ids"]) == {"lane-1-a1", "lane-1-a3"}

    # A second run finds nothing; the CLI says what it did.
    result = CliRunner().invoke(
        server_cli,
        ["retention", "--db", store.database_url, "--days", "30"],
        env={"LANEGUARD_DATA_DIR": str(store.data_dir)},
    )
    assert result.exit_code == 0, result.output
    assert "0 alerts cleared" in result.output and "1 alerts kept" in result.output
    engine.dispose()

    with httpx.Client(base_url=store.url, timeout=10) as client:
        csrf = sign_in(client, "mia", "manager-pass")
        page = client.get("/alerts/lane-1-a1").text
        assert "Evidence deleted" in page and "<video" not in page
        late = client.post("/alerts/lane-1-a1/keep", data={"keep": "true", "csrf_token": csrf})
        assert late.status_code == 409 and "already deleted" in late.text
    with httpx.Client(base_url=store.url, timeout=10) as client:
        sign_in(client, "ivan", "admin-pass!")
        entries = client.get("/audit").text
        assert re.search(r"evidence\.deleted", entries) and "alert.keep_evidence" in entries


def test_an_unknown_item_shows_the_lanes_best_guesses_by_name(store: Store, tmp_path: Path) -> None:
    unknown = alert("lane-1", 7, image=jpeg(7)).model_copy(
        update={
            "seen_code": None,
            "guesses": [
                Guess(code="2049428595758", score=0.61),
                Guess(code="2027957422882", score=0.55),
            ],
        }
    )
    video = webm(tmp_path, seed=7)
    delivered = store.deliver(
        store.lane_1, transaction("lane-1", 7, honest=False), unknown, clip("lane-1", 7, video)
    )
    assert [s for s, _ in statuses(delivered)] == ["stored"] * 3
    too_many = {**as_json(unknown), "message_id": "lane-1:alert:8:open", "alert_id": "lane-1-a8"}
    too_many["guesses"] = [{"code": "2049428595758", "score": 0.5}] * 6
    assert "guesses" in str(statuses(store.deliver(store.lane_1, too_many))[0][1])
    with httpx.Client(base_url=store.url, timeout=10) as client:
        sign_in(client, "mia", "manager-pass")
        page = client.get("/alerts/lane-1-a7").text
        listing = client.get("/transactions").text
        record = re.search(r'href="/transactions/(\d+)"', listing)
        assert record is not None
        receipt = client.get(f"/transactions/{record.group(1)}").text
    guesses = page.split('id="guesses"', 1)[1].split('<dl class="facts">', 1)[0]
    assert "Whole Milk 1 l" in guesses and "Semi-Skimmed Milk 1 l" in guesses
    assert "61% alike" in guesses and guesses.index("Whole Milk") < guesses.index("Semi-Skimmed")
    # The transaction shows the same: its alert's clip, and the guesses by name.
    alert_card = receipt.split('data-alert="lane-1-a7"', 1)[1]
    assert '<video class="clip" src="/media/' in alert_card
    assert "Best guesses:" in alert_card and "Whole Milk 1 l" in alert_card


def test_training_crops_past_their_retention_are_deleted(database_url: str, tmp_path: Path) -> None:
    """Samples captured more than sample_retention_days ago go, rows and files; a file an
    alert still shows stays; a gallery entry learned from one keeps its vector; newer samples
    stay; the run is audited."""
    engine = make_engine(database_url)
    migrate(engine)
    media = MediaStore(tmp_path / "media")
    now = utcnow()
    old_crop, shared_crop, new_crop = (media.save(jpeg(n)) for n in (1, 2, 3))

    def row(n: int, image: str, days_ago: int) -> SampleRecord:
        return SampleRecord(
            message_id=f"lane-1:sample:{n}",
            lane_id="lane-1",
            transaction_id=f"t{n}",
            track_id=1,
            code="4011",
            band="unknown",
            score=0.5,
            reason="honest",
            image=image,
            captured_at=now - timedelta(days=days_ago),
        )

    with Session(engine) as session:
        rows = [row(1, old_crop, 200), row(2, shared_crop, 190), row(3, new_crop, 10)]
        session.add_all(rows)
        session.flush()
        session.add(
            GalleryEntry(
                code="4011",
                vector_b64="AAAA",
                embedder_sha256="e" * 64,
                transaction_id="t1",
                lane_id="lane-1",
                sample_id=rows[0].id,
            )
        )
        message = alert("lane-1", 9)
        session.add(
            AlertRecord(
                **message.model_dump(
                    include={"alert_id", "lane_id", "transaction_id", "alert_type", "severity"}
                ),
                raised_at=now,
                evidence=shared_crop,
                status="open",
            )
        )
        session.commit()

    report = purge_expired_samples(engine, media, days=180, now=now)
    assert (report.samples, report.sample_files) == (2, 1)
    with Session(engine) as session:
        left = [s.message_id for s in session.exec(select(SampleRecord))]
        entry = session.exec(select(GalleryEntry)).one()
        audit = [e for e in session.exec(select(AuditEntry)) if e.username == RETENTION_USER]
    assert left == ["lane-1:sample:3"]
    assert entry.sample_id is None and entry.vector_b64 == "AAAA"
    assert not media.path(old_crop).exists()
    assert media.path(shared_crop).exists() and media.path(new_crop).exists()
    assert [a.action for a in audit] == ["samples.deleted"]
    assert purge_expired_samples(engine, media, days=180, now=now).samples == 0
    engine.dispose()
