"""Every probe of the security review, replayed against a real lane and a real store server
(uvicorn on 127.0.0.1): each is refused with a clear 4xx, stores nothing, and a flood of bytes
costs neither process more than a bounded amount of memory."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import stat
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlmodel import Session, select
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from checkout_node.catalog import LaneCatalog
from checkout_node.gallery_follower import GalleryFollower
from checkout_node.lane import Lane
from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.outbox import Outbox
from checkout_node.reconcile.model import SeenItem
from checkout_node.service import LaneService
from checkout_node.settings import LaneSettings
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess, hash_pin
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from harness.flood import flood, memory_growth
from laneguard.bundle import (
    MANIFEST,
    SHIPPED_BUNDLE,
    SIGNATURE,
    BundleError,
    derive_bundle,
    read_manifest,
)
from laneguard.cli import main
from laneguard.discovery import DiscoveryResponder, discover_store
from laneguard.gallery import Gallery
from laneguard.signing import (
    BundleTrust,
    SignatureError,
    key_id,
    load_private_key,
    new_keypair,
    sign_json,
)
from product_db.db import make_engine
from store_server.app import create_app
from store_server.auth import UserAccountError, create_user
from store_server.learning import store_key_id
from store_server.models import AlertRecord, AuditEntry, IngestedMessage, TransactionRecord
from store_server.rollouts import publish_bundle, start_rollout
from store_server.served import serve_store
from store_server.settings import StoreSettings
from tests.helpers.kiosk import run_kiosk
from tests.helpers.live_server import enrol, enrolment_token, free_port, serve
from tests.helpers.messages import alert, as_json, jpeg, transaction
from tests.helpers.paths import REPO_ROOT

pytestmark = pytest.mark.timeout(300)
GB = 1 << 30
TILL_TOKEN = "till-7-secret-token"
PIN = "8642"


# -- the lane -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def models() -> LaneModels:
    return load_models(SHIPPED_BUNDLE, profile="x86-2core")


@dataclass
class LaneUnderTest:
    lane: Lane
    url: str
    access: LaneAccess
    outbox: Outbox


@pytest.fixture
def lane(tmp_path: Path, models: LaneModels) -> Iterator[LaneUnderTest]:
    """A lane whose till has a token and whose store has a supervisor PIN."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    hub = ScreenHub()
    lane = Lane(
        "lane-1",
        LanePipeline(models, LaneZones.standard(640, 480)),
        LaneCatalog.from_file(),
        outbox,
        hub.publish,
    )
    access = LaneAccess(
        "screen-key-of-this-lane-0001", (TILL_TOKEN,), (hash_pin(PIN),), frozenset()
    )
    with serve(create_lane_app(lane, hub, live_clock=False, access=access)) as url:
        yield LaneUnderTest(lane, url, access, outbox)
    outbox.close()


def raise_alert(under: LaneUnderTest) -> str:
    """A counted item nobody scanned: an open alert on the lane."""
    product = next(p for p in LaneCatalog.from_file().products.values() if p.price_minor >= 300)
    under.lane.add_item(
        SeenItem(4, 3.0, 1.0, product.code, "trusted", 0.98, ((product.code, 0.98),), b"\xff")
    )
    assert under.lane.transaction is not None
    return under.lane.transaction.alerts[0].alert_id


def test_a_till_without_its_token_cannot_pay_for_an_item_with_a_fake_scan(
    lane: LaneUnderTest,
) -> None:
    events = [
        {"type": "transaction_start", "event_id": "s", "t": 0.0, "transaction_id": "POS-1"},
        {"type": "scan", "event_id": "a", "t": 1.0, "code": "4011"},
        {"type": "transaction_end", "event_id": "e", "t": 2.0, "transaction_id": "POS-1"},
    ]
    with httpx.Client(base_url=lane.url) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            reply = client.post("/api/pos/events", json=events, headers=headers)
            assert reply.status_code == 401 and "till not recognised" in reply.text
        assert lane.lane.transaction is None and not lane.lane.ended
        assert lane.outbox.due(10) == []
        ok = client.post(
            "/api/pos/events", json=events, headers={"Authorization": f"Bearer {TILL_TOKEN}"}
        )
        assert ok.status_code == 202
    # with no till tokens configured, only this computer's own programs are tills
    bare = LaneAccess("k" * 20)
    assert bare.pos_allowed({}, "127.0.0.1") and not bare.pos_allowed({}, "192.168.1.20")


def test_a_page_on_another_site_cannot_inject_scans(lane: LaneUnderTest) -> None:
    scan = json.dumps({"type": "scan", "event_id": "x", "t": 1.0, "code": "4011"})
    auth = {"Authorization": f"Bearer {TILL_TOKEN}"}
    with httpx.Client(base_url=lane.url) as client:
        plain = client.post(
            "/api/pos/events",
            content=scan,
            headers={**auth, "Content-Type": "text/plain", "Origin": "http://evil.example"},
        )
        assert plain.status_code == 403 and "other sites" in plain.text
        as_text = client.post(
            "/api/pos/events", content=scan, headers={**auth, "Content-Type": "text/plain"}
        )
        assert as_text.status_code == 415
    assert lane.lane.transaction is None
    for path, extra in (("/api/pos/ws", auth), ("/ws/screen", {})):
        headers = {
            **extra,
            "Origin": "http://evil.example",
            "Cookie": f"{lane.access.screen_cookie_name}={lane.access.screen_cookie}",
        }
        with pytest.raises(InvalidStatus) as refused:
            connect(lane.url.replace("http", "ws") + path, additional_headers=headers)
        assert refused.value.response.status_code == 403


def test_alerts_evidence_and_state_need_the_lane_screen_and_overrides_a_pin(
    lane: LaneUnderTest,
) -> None:
    alert_id = raise_alert(lane)
    with httpx.Client(base_url=lane.url) as stranger:
        resolve = stranger.post(
            f"/api/alerts/{alert_id}/resolve", json={"resolution": "not_an_item"}
        )
        assert resolve.status_code == 401
        assert stranger.get(f"/api/alerts/{alert_id}/evidence.jpg").status_code == 401
        assert stranger.get("/api/state").status_code == 401
        assert stranger.get("/").status_code == 401
        assert stranger.get("/screen/session?key=guess").status_code == 403
        with pytest.raises(InvalidStatus):
            connect(lane.url.replace("http", "ws") + "/ws/screen")
    assert lane.lane.transaction is not None
    assert lane.lane.transaction.alerts[0].status == "open"
    assert not [e for e in lane.outbox.due(50) if '"resolved"' in e.payload.decode()]

    with httpx.Client(base_url=lane.url, follow_redirects=True) as kiosk:
        assert kiosk.get(f"/screen/session?key={lane.access.screen_key}").status_code == 200
        assert kiosk.get("/api/state").status_code == 200
        override = {"resolution": "supervisor_override", "reason": "paid at the desk"}
        assert kiosk.post(f"/api/alerts/{alert_id}/resolve", json=override).status_code == 403
        for _ in range(5):
            wrong = kiosk.post(f"/api/alerts/{alert_id}/resolve", json={**override, "pin": "0"})
            assert wrong.status_code == 403
        locked = kiosk.post(f"/api/alerts/{alert_id}/resolve", json={**override, "pin": PIN})
        assert locked.status_code == 403 and "locked" in locked.text
        assert lane.lane.transaction.alerts[0].status == "open"
        lane.access._pin_failures.clear()  # a minute later
        done = kiosk.post(f"/api/alerts/{alert_id}/resolve", json={**override, "pin": PIN})
        assert done.status_code == 200 and done.json()["resolution"] == "supervisor_override"


def test_the_lane_refuses_a_flood_at_its_cap_with_bounded_memory(lane: LaneUnderTest) -> None:
    auth = {"Authorization": f"Bearer {TILL_TOKEN}", "Content-Type": "application/json"}
    with memory_growth() as memory:
        chunked = flood(lane.url, "/api/pos/events", GB, auth)
        declared = flood(lane.url, "/api/pos/events", GB, auth, declare_length=True)
    assert chunked.status == 413 and chunked.sent < 64 << 20, chunked
    assert declared.status == 413 and declared.sent < 64 << 20, declared
    assert memory.peak_growth_mb < 100, f"the lane grew by {memory.peak_growth_mb:.0f} MB"
    assert lane.lane.transaction is None


# -- the store server -----------------------------------------------------------------------------
@dataclass
class StoreUnderTest:
    url: str
    database_url: str
    settings: StoreSettings


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreUnderTest]:
    database_url = f"sqlite:///{tmp_path / 'store' / 'store.sqlite3'}"
    settings = StoreSettings(
        database_url=database_url, data_dir=tmp_path / "store", discovery_port=0
    )
    with serve(create_app(settings)) as url:
        yield StoreUnderTest(url, database_url, settings)


def stored(database_url: str, table: type) -> list[object]:
    engine = make_engine(database_url)
    with Session(engine) as session:
        rows = list(session.exec(select(table)))
    engine.dispose()
    return rows


def test_one_lanes_credential_cannot_write_for_another_lane(store: StoreUnderTest) -> None:
    lane1 = {"Authorization": f"Bearer {enrol(store.url, store.database_url, 'lane-1')}"}
    lane2 = {"Authorization": f"Bearer {enrol(store.url, store.database_url, 'lane-2')}"}
    raised = as_json(alert("lane-1", 1))
    assert httpx.post(f"{store.url}/api/v1/ingest", json={"messages": [raised]}, headers=lane1)
    # lane-2 reports lane-1's alert as resolved, in lane-2's name and in lane-1's
    for forged_lane in ("lane-2", "lane-1"):
        forged = {**as_json(alert("lane-1", 1, "resolved")), "lane_id": forged_lane}
        forged["message_id"] = f"{forged_lane}:alert:forged"
        reply = httpx.post(f"{store.url}/api/v1/ingest", json={"messages": [forged]}, headers=lane2)
        assert reply.status_code == 403 and "lane 'lane-2'" in reply.text, reply.text
    (record,) = stored(store.database_url, AlertRecord)
    assert record.lane_id == "lane-1" and record.status == "open"  # type: ignore[attr-defined]

    # lane-2 takes lane-1's predictable message id first: lane-1's transaction still lands
    squat = {**as_json(transaction("lane-2", 1001)), "message_id": "lane-1:tx:POS-1001"}
    assert (
        httpx.post(f"{store.url}/api/v1/ingest", json={"messages": [squat]}, headers=lane2).json()[
            "stored"
        ]
        == 1
    )
    real = {**as_json(transaction("lane-1", 1001)), "message_id": "lane-1:tx:POS-1001"}
    reply = httpx.post(f"{store.url}/api/v1/ingest", json={"messages": [real]}, headers=lane1)
    assert reply.json()["stored"] == 1, reply.text
    lanes = sorted(r.lane_id for r in stored(store.database_url, TransactionRecord))  # type: ignore[attr-defined]
    assert lanes == ["lane-1", "lane-2"]
    ids = {(m.lane_id, m.message_id) for m in stored(store.database_url, IngestedMessage)}  # type: ignore[attr-defined]
    assert {("lane-1", "lane-1:tx:POS-1001"), ("lane-2", "lane-1:tx:POS-1001")} <= ids


def test_the_store_refuses_floods_before_reading_them_with_bounded_memory(
    store: StoreUnderTest,
) -> None:
    credential = enrol(store.url, store.database_url, "lane-1")
    lane = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
    upload = {"Content-Type": "multipart/form-data; boundary=x"}
    with memory_growth() as memory:
        declared = flood(store.url, "/api/v1/ingest", GB, {}, declare_length=True)
        unauthenticated = flood(store.url, "/api/v1/ingest", GB)
        authenticated = flood(store.url, "/api/v1/ingest", GB, lane)
        spooled = flood(store.url, "/catalog/import", GB, upload)
    # Refused from its declared length, before reading: what the client got to send is what the
    # loopback socket buffers took meanwhile (1 MB chunks; 2 of them on a loaded machine).
    assert declared.status == 413 and declared.sent <= 4 << 20, declared
    assert unauthenticated.status == 401 and unauthenticated.sent < 40 << 20, unauthenticated
    assert authenticated.status == 413 and authenticated.sent < 40 << 20, authenticated
    assert spooled.status in (401, 413) and spooled.sent < 30 << 20, spooled
    assert memory.peak_growth_mb < 100, f"the store server grew by {memory.peak_growth_mb:.0f} MB"
    assert stored(store.database_url, TransactionRecord) == []


def test_wrong_enrolment_tokens_are_audited_and_throttled_by_address(
    store: StoreUnderTest,
) -> None:
    """Guessing lane enrolment tokens: each wrong one is refused (403) and audited with the
    client address; after five, the address waits (429, Retry-After) before it may try again,
    and a right token is then refused the same way until the wait is over."""
    for n in range(5):
        wrong = httpx.post(f"{store.url}/api/v1/enrol", json={"token": f"guess-{n:02d}" * 4})
        assert wrong.status_code == 403, wrong.text
    held = httpx.post(f"{store.url}/api/v1/enrol", json={"token": "guess-05" * 4})
    assert held.status_code == 429 and int(held.headers["Retry-After"]) >= 1
    token = enrolment_token(store.database_url, "lane-9")
    assert httpx.post(f"{store.url}/api/v1/enrol", json={"token": token}).status_code == 429
    refused = [r for r in stored(store.database_url, AuditEntry) if r.action == "enrolment.refused"]  # type: ignore[attr-defined]
    assert len(refused) == 5 and {r.client for r in refused} == {"127.0.0.1"}  # type: ignore[attr-defined]
    time.sleep(1.1)  # the first wait is a second
    assert httpx.post(f"{store.url}/api/v1/enrol", json={"token": token}).status_code == 200


def test_sign_in_backs_off_locks_and_audits_with_the_client_address(
    store: StoreUnderTest,
) -> None:
    engine = make_engine(store.database_url)
    for weak in ("12345678", "password", "password123", "qwertyuiop"):
        with pytest.raises(UserAccountError):
            create_user(engine, "mia", weak, "manager")
    create_user(engine, "mia", "store-42 manager pass", "manager")
    with httpx.Client(base_url=store.url) as browser:

        def sign_in(password: str) -> httpx.Response:
            page = browser.get("/login")
            token = page.text.split('name="login_csrf" value="')[1].split('"')[0]
            form = {"username": "mia", "password": password, "login_csrf": token}
            return browser.post("/login", data=form)

        statuses = [sign_in(f"wrong-{n}").status_code for n in range(20)]
        assert statuses[:3] == [401, 401, 401] and 429 in statuses, statuses
        assert sign_in("store-42 manager pass").status_code == 429, "locked: even the right one"
    with Session(engine) as session:
        rows = [
            row
            for row in session.exec(select(AuditEntry))
            if row.username == "mia" or row.target == "mia"
        ]
    engine.dispose()
    actions = {row.action for row in rows}
    assert {"user.created", "login.failed", "login.locked", "login.throttled"} <= actions
    assert all(row.client == "127.0.0.1" for row in rows if row.action.startswith("login"))

    cli = CliRunner().invoke(
        main,
        ["server", "add-user", "ivan", "--role", "it_admin", "--password", "Ivan's admin pass 7",
         "--db", store.database_url],
    )  # fmt: skip
    assert cli.exit_code == 0, cli.output
    weak = CliRunner().invoke(
        main, ["server", "add-user", "eve", "--password", "12345678", "--db", store.database_url]
    )
    assert weak.exit_code != 0 and "password" in weak.output
    (created,) = [
        row
        for row in stored(store.database_url, AuditEntry)
        if row.action == "user.created" and row.target == "ivan"  # type: ignore[attr-defined]
    ]
    assert created.client == "cli" and created.detail == {"role": "it_admin"}  # type: ignore[attr-defined]


def test_store_files_holding_evidence_and_secrets_are_private(
    store: StoreUnderTest, lane: LaneUnderTest, tmp_path: Path
) -> None:
    credential = enrol(store.url, store.database_url, "lane-1")
    message = as_json(alert("lane-1", 3, image=jpeg(3)))
    httpx.post(
        f"{store.url}/api/v1/ingest",
        json={"messages": [message]},
        headers={"Authorization": f"Bearer {credential}"},
    )
    data_dir = store.settings.data_dir
    media = next((data_dir / "media").rglob("*.jpg"))
    for path, mode in (
        (data_dir, 0o700),
        (data_dir / "store.sqlite3", 0o600),
        (data_dir / "media", 0o700),
        (media.parent, 0o700),
        (media, 0o600),
        (data_dir / "keys" / "store.key", 0o600),
        (lane.outbox.path, 0o600),
        (lane.outbox.path.parent, 0o700),
    ):
        assert stat.S_IMODE(os.stat(path).st_mode) == mode, f"{path}: {oct(os.stat(path).st_mode)}"


# -- bundles, discovery, gallery updates ----------------------------------------------------------
def zero_bomb(out: Path, signed_by: Path | None = None) -> Path:
    """A bundle whose one extra member is 1 GB of zeros (a few MB compressed), listed in its
    manifest, optionally signed: it must be refused before the zeros are held anywhere."""
    manifest = read_manifest(SHIPPED_BUNDLE)
    manifest.files["zeros.bin"] = "0" * 64
    members = [(MANIFEST, manifest.model_dump_json().encode())]
    if signed_by is not None:
        private = load_private_key(signed_by)
        signature = {
            "key_id": key_id(private.public_key()),
            "signature": base64.b64encode(private.sign(members[0][1])).decode(),
        }
        members.append((SIGNATURE, json.dumps(signature).encode()))

    class Zeros(io.RawIOBase):
        left = GB

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    with tarfile.open(out, "w:gz", compresslevel=1) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        zeros = tarfile.TarInfo("zeros.bin")
        zeros.size = GB
        tar.addfile(zeros, io.BufferedReader(Zeros(), 1 << 20))
    return out


def test_a_compressed_bomb_is_refused_fast_with_bounded_memory(tmp_path: Path) -> None:
    private, public = new_keypair(tmp_path / "keys")
    unsigned = zero_bomb(tmp_path / "bomb.tar.gz")
    signed = zero_bomb(tmp_path / "signed-bomb.tar.gz", private)
    assert unsigned.stat().st_size < 8 << 20
    trust = BundleTrust.from_files([public])
    with memory_growth() as memory:
        started = time.monotonic()
        with pytest.raises(BundleError, match="unsigned"):
            trust.check_signature(unsigned)
        refused_unsigned_s = time.monotonic() - started
        trust.check_signature(signed)  # the signature is good...
        with pytest.raises(BundleError, match="at most"):
            trust.extract(signed, tmp_path / "out")  # ...but the member is refused by its size
    assert refused_unsigned_s < 1.0, refused_unsigned_s
    assert memory.peak_growth_mb < 100, f"grew by {memory.peak_growth_mb:.0f} MB"


def install_lane(tmp_path: Path, token: str, server: str) -> LaneSettings:
    """The lane a fresh `install-node.sh` sets up (its --config-only files), pointed at a
    simulated camera that is not there."""
    etc = tmp_path / "etc"
    release_pub = new_keypair(tmp_path / "store-keys", "release")[1]
    env = {
        **os.environ,
        "LANEGUARD_BIN": str(Path(sys.executable).with_name("laneguard")),
        "RELEASE_PUB": str(release_pub),
    }
    subprocess.run(
        ["bash", str(REPO_ROOT / "hardware/scripts/install-node.sh"), "--config-only", str(etc),
         token, server],
        check=True, env=env, capture_output=True, text=True,
    )  # fmt: skip
    from laneguard.settings import load_settings

    settings = load_settings(LaneSettings, etc / "lane.yaml")
    return settings.model_copy(update={"camera": "/dev/null", "lane_id": "lane-9"})


def test_a_freshly_installed_lane_refuses_unsigned_bundles_and_impostor_stores(
    tmp_path: Path,
) -> None:
    database_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    http_port, udp_port = free_port(), free_port()
    settings = StoreSettings(
        database_url=database_url,
        data_dir=tmp_path / "store",
        port=http_port,
        discovery_port=udp_port,
    )
    impostor_port = free_port()
    impostor = DiscoveryResponder(
        impostor_port, "127.0.0.1", free_port(), "Evil store", load_private_key(
            new_keypair(tmp_path / "evil")[0]
        )
    )  # fmt: skip
    impostor.start()
    try:
        with serve_store(settings, port=http_port) as url:
            key = store_key_id(settings)
            token = enrolment_token(database_url, "lane-9", key)
            assert discover_store(key, impostor_port, timeout_s=1.0) is None
            assert discover_store(key, udp_port, timeout_s=3.0) is not None
            installed = install_lane(tmp_path, token, "discover")
            assert installed.bundle_keys and not installed.allow_unsigned_bundles
            assert installed.http_host == "127.0.0.1" and installed.pos_tokens

            fooled = LaneService(installed.model_copy(update={"discovery_port": impostor_port}))
            looking = threading.Thread(target=fooled.discovery_loop, daemon=True)
            looking.start()
            time.sleep(3.0)  # one round of asking (2 s) against the impostor alone
            fooled._stop.set()
            looking.join(timeout=15)
            assert fooled.server_url is None, "it took the impostor's answer"

            service = LaneService(installed.model_copy(update={"server_url": url}))
            service.queue_heartbeat(fps=25.0)
            assert service.uploader is not None and not service.uploader.deliver_once().failed
            engine = make_engine(database_url)
            unsigned = derive_bundle(SHIPPED_BUNDLE, tmp_path / "new.tar.gz", "store-2", 2)
            with Session(engine) as session:
                release = publish_bundle(session, settings.data_dir, unsigned, "it")
                start_rollout(session, release.id or 0, ["lane-9"], "it", (1.0,), soak_s=0)
                session.commit()
            engine.dispose()
            assert service.updater is not None
            outcome = service.updater.poll_once()
            assert outcome.startswith("refused") and "trusts no" not in outcome, outcome
            assert "unsigned" in outcome
    finally:
        impostor.stop()


def test_a_replayed_gallery_update_is_refused(store: StoreUnderTest, tmp_path: Path) -> None:
    """An old signed answer (entries since 0) replayed to a lane that asked for later ones."""
    key = load_private_key(store.settings.data_dir / "keys" / "store.key")
    old = sign_json({"since": 0, "latest": 3, "entries": []}, key)
    from fastapi import FastAPI

    replayer = FastAPI()
    replayer.get("/api/v1/gallery/updates")(lambda: old)
    pem = (store.settings.data_dir / "keys" / "store.pub").read_text()
    base = Gallery.load(load_models(SHIPPED_BUNDLE).folder / "gallery.npz")
    with serve(replayer) as url:
        follower = GalleryFollower(
            url, lambda: "credential", lambda: pem, base, lambda _g: None, tmp_path, latest=5
        )
        with pytest.raises(SignatureError, match="since=0, not since=5"):
            follower.poll_once()


def test_a_console_session_idle_too_long_ends(store: StoreUnderTest) -> None:
    from datetime import timedelta

    from store_server.auth import IDLE_MINUTES
    from store_server.models import ConsoleSession
    from tests.helpers.live_server import sign_in

    engine = make_engine(store.database_url)
    create_user(engine, "mia", "store-42 manager pass", "manager")
    with httpx.Client(base_url=store.url) as browser:
        sign_in(browser, "mia", "store-42 manager pass")
        assert browser.get("/alerts").status_code == 200
        with Session(engine) as session:
            (record,) = session.exec(select(ConsoleSession))
            record.last_seen_at = record.last_seen_at - timedelta(minutes=IDLE_MINUTES + 1)
            session.add(record)
            session.commit()
        idle = browser.get("/alerts", follow_redirects=False)
        assert idle.status_code == 303 and idle.headers["location"].startswith("/login")
        with Session(engine) as session:
            assert list(session.exec(select(ConsoleSession))) == [], "the session is gone"
    engine.dispose()


def test_slow_header_clients_are_cut_off_and_others_still_served(tmp_path: Path) -> None:
    """Slowloris: connections that send their request headers a few bytes at a time, or open
    and send nothing, are closed once the header timeout passes (at connect and again after
    a keep-alive response), while an ordinary client is answered throughout."""
    database_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    settings = StoreSettings(database_url=database_url, data_dir=tmp_path / "s", discovery_port=0)
    with serve(create_app(settings), header_timeout_s=1.0) as url:
        port = int(url.rsplit(":", 1)[1])
        slow = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(20)]
        for n, client in enumerate(slow):
            if n % 2:
                client.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends
        kept_alive = socket.create_connection(("127.0.0.1", port), timeout=5)
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert kept_alive.recv(4096).startswith(b"HTTP/1.1")
        kept_alive.sendall(b"GET /healthz HTTP/1.1\r\n")  # a second request, left unfinished
        started = time.monotonic()
        for client in slow[1::2]:
            client.sendall(b"X-Slow: 1\r\n")  # a trickle of bytes does not keep it open
        assert httpx.get(f"{url}/login", timeout=5).status_code == 200
        for client in [*slow, kept_alive]:
            assert _closed_by_server(client)
            client.close()
        assert time.monotonic() - started < 4.0


def _closed_by_server(client: socket.socket) -> bool:
    """Whether the server ends the connection (what it still sends is read and dropped)."""
    try:
        while client.recv(4096):
            pass
    except TimeoutError:
        return False
    return True


def test_the_kiosk_opens_the_screen_with_a_one_time_ticket_never_the_key(
    lane: LaneUnderTest, tmp_path: Path
) -> None:
    """The screen key on chromium's command line was readable by any local user (ps). The
    kiosk script trades it for a ticket; a ticket signs in once, within a minute."""
    opened = run_kiosk(tmp_path, lane.url, lane.access.screen_key)
    assert opened.process.returncode == 0, opened.process.stderr
    argv = opened.argv
    assert lane.access.screen_key not in argv and "ticket=" in argv
    assert 'id="seen"' in opened.page, "the kiosk's browser got the signed-in screen"
    url = argv.strip().splitlines()[-1]
    with httpx.Client() as again:
        assert again.get(url).status_code == 403, "a ticket signs in once"
        wrong = again.post(f"{lane.url}/screen/ticket", data={"key": "guess"})
        assert wrong.status_code == 403


def test_the_installer_refuses_to_make_the_bundle_signing_key_on_the_lane(tmp_path: Path) -> None:
    """Without RELEASE_PUB it made a key pair on the lane and trusted it: whoever holds the lane
    could sign bundles for it. It now stops and says what to give it."""
    etc = tmp_path / "etc"
    env = {**os.environ, "LANEGUARD_BIN": str(Path(sys.executable).with_name("laneguard"))}
    env.pop("RELEASE_PUB", None)
    refused = _installer_config_only(etc, "discover", env)
    assert refused.returncode == 2 and "RELEASE_PUB is required" in refused.stderr
    assert not list((etc / "keys").glob("*")) and not (etc / "lane.yaml").exists()
    unit = (REPO_ROOT / "hardware/systemd/laneguard-node.service").read_text()
    assert "input" not in unit.split("SupplementaryGroups=")[1].splitlines()[0]
    rules = (REPO_ROOT / "hardware/udev/99-laneguard-scanners.rules").read_text()
    assert 'SUBSYSTEM=="input", KERNEL=="event*"' in rules and 'GROUP="laneguard"' in rules


def test_the_installer_refuses_a_plain_http_store(tmp_path: Path) -> None:
    """The token and every credential would cross the store network readable: the installer
    takes an https:// store or discovery, nothing else."""
    etc = tmp_path / "etc"
    release = new_keypair(tmp_path / "release")[1]
    env = {**os.environ, "RELEASE_PUB": str(release)}
    refused = _installer_config_only(etc, "http://192.0.2.10:8000", env)
    assert refused.returncode == 2 and "must be https://" in refused.stderr
    assert not (etc / "lane.yaml").exists()


def _installer_config_only(
    etc: Path, server: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """`install-node.sh --config-only` with a token and ``server``, as IT would run it."""
    return subprocess.run(
        ["bash", str(REPO_ROOT / "hardware/scripts/install-node.sh"), "--config-only", str(etc),
         "token", server],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
