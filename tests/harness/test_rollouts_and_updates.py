"""Model updates end to end: a real store server publishes signed bundles and rolls them out in
stages; real lane services take them with the updater (download with resume and hash check,
signature, smoke test in a child process, swap between transactions) and report their health
in heartbeats, by which the server promotes a stage or halts and rolls back."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from checkout_node.doctor import examine
from checkout_node.service import LaneService
from checkout_node.settings import LaneSettings
from checkout_node.updater import UpdateError, UpdateState, bundle_at_start, download
from harness.drills import not_a_detector
from laneguard.bundle import SHIPPED_BUNDLE, derive_bundle, read_manifest
from laneguard.signing import load_private_key, new_keypair, sign_bundle
from laneguard.wire import PosMessage
from product_db.db import make_engine
from store_server.app import create_app
from store_server.auth import create_user
from store_server.models import Rollout
from store_server.rollouts import HealthLimits, RolloutLoop, publish_bundle, start_rollout
from store_server.served import serve_store
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrolment_token, serve, sign_in

pytestmark = pytest.mark.timeout(600)


def make_bundle(
    out: Path, key: Path, version: str, release: int, broken_detector: bool = False
) -> Path:
    """The shipped bundle under another version and release, signed; with ``broken_detector``
    its detectors are replaced by a model that loads but is not a detector."""
    replace = not_a_detector(SHIPPED_BUNDLE) if broken_detector else None
    unsigned = derive_bundle(
        SHIPPED_BUNDLE, out.with_suffix(".unsigned"), version, release, replace
    )
    signed = sign_bundle(unsigned, load_private_key(key), out)
    unsigned.unlink()
    return signed


@dataclass
class Store:
    url: str
    database_url: str
    data_dir: Path

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.database_url)

    def session(self) -> Session:
        return Session(self.engine)

    def publish(self, bundle: Path) -> int:
        with self.session() as session:
            release = publish_bundle(session, self.data_dir, bundle, "test")
            session.commit()
            assert release.id is not None
            return release.id

    def rollout(self, rollout_id: int | None = None) -> Rollout:
        with self.session() as session:
            query = select(Rollout).order_by(Rollout.id.desc())  # type: ignore[union-attr]
            found = session.get(Rollout, rollout_id) if rollout_id else session.exec(query).first()
            assert found is not None
            return found

    def roll_out(self, release_id: int, canary: list[str], soak_s: float) -> None:
        """Canary lanes, then every lane."""
        with self.session() as session:
            start_rollout(session, release_id, canary, "test", shares=(1.0,), soak_s=soak_s)
            session.commit()

    def judge(self) -> None:
        """One pass of the server's rollout loop (its own runs only once an hour here)."""
        RolloutLoop(self.engine, HealthLimits()).run_once()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return new_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory, keys: tuple[Path, Path]) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bundles")
    private = keys[0]
    return {
        "base": make_bundle(folder / "base.tar.gz", private, "store-1", 1),
        "good": make_bundle(folder / "good.tar.gz", private, "store-2", 2),
        "broken": make_bundle(folder / "broken.tar.gz", private, "store-3", 3, True),
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    database_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    # Plain HTTP (the tests below talk to it as consoles and lanes by hand); TLS is the lane
    # service's and discovery's tests' business.
    settings = StoreSettings(
        database_url=database_url, data_dir=tmp_path / "store", rollout_check_s=3600, tls=False
    )
    with serve(create_app(settings)) as base:
        store = Store(base, database_url, tmp_path / "store")
        yield store
        store.engine.dispose()


def lane(
    store: Store, lane_id: str, tmp_path: Path, keys: tuple[Path, Path], base: Path
) -> LaneService:
    """A lane service (not started: the test drives its updater and heartbeat by hand)."""
    service = LaneService(
        LaneSettings(
            lane_id=lane_id,
            camera="/dev/null",
            bundle=base,
            bundle_keys=[keys[1]],
            server_url=store.url,
            allow_plain_http=True,
            enrolment_token=enrolment_token(store.database_url, lane_id),
            data_dir=tmp_path / lane_id,
        )
    )
    beat(service)  # enrols it
    return service


def beat(service: LaneService) -> None:
    """A heartbeat, delivered now."""
    service.queue_heartbeat(fps=25.0)
    assert service.uploader is not None
    report = service.uploader.deliver_once()
    assert not report.failed, report


def test_download_resumes_where_it_stopped_and_checks_the_hash(
    store: Store, bundles: dict[str, Path], tmp_path: Path
) -> None:
    store.publish(bundles["good"])
    sha = hashlib.sha256(bundles["good"].read_bytes()).hexdigest()
    size = bundles["good"].stat().st_size
    credential = httpx.post(
        f"{store.url}/api/v1/enrol",
        json={"token": enrolment_token(store.database_url, "lane-dl")},
    ).json()["credential"]
    headers = {"Authorization": f"Bearer {credential}"}
    statuses: list[int] = []
    client = httpx.Client(
        base_url=store.url, event_hooks={"response": [lambda r: statuses.append(r.status_code)]}
    )

    def cut(have: int) -> None:
        if have >= size // 2:
            raise httpx.ReadError("connection lost")  # the network drops mid-download

    folder = tmp_path / "updates"
    with pytest.raises(httpx.ReadError):
        download(client, f"/api/v1/bundles/{sha}", sha, size, folder, headers, on_progress=cut)
    partial = folder / f"{sha}.tar.gz.partial"
    kept = partial.stat().st_size
    assert size // 2 <= kept < size
    path = download(client, f"/api/v1/bundles/{sha}", sha, size, folder, headers)
    assert statuses == [200, 206], "the second request asked only for the rest"
    assert path.read_bytes() == bundles["good"].read_bytes() and not partial.exists()
    with pytest.raises(UpdateError, match="does not match"):
        download(client, f"/api/v1/bundles/{sha}", "0" * 64, size, tmp_path / "other", headers)
    assert not list((tmp_path / "other").glob("*.tar.gz"))
    refused = client.get(f"/api/v1/bundles/{sha}")
    assert refused.status_code == 401, "bundles only go to enrolled lanes"


def test_staged_rollout_reaches_every_lane_swapping_between_transactions(
    store: Store, bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    canary = lane(store, "lane-1", tmp_path, keys, bundles["base"])
    other = lane(store, "lane-2", tmp_path, keys, bundles["base"])
    good = store.publish(bundles["good"])
    store.roll_out(good, ["lane-1"], soak_s=0)
    assert canary.updater is not None and other.updater is not None
    assert other.updater.poll_once() == "up to date", "not in the canary stage"

    # The canary is mid-transaction: the new bundle waits for it to end.
    canary.lane.on_input(
        PosMessage(type="transaction_start", event_id="e1", transaction_id="tx-1", t=0.0)
    )
    outcome: list[str] = []
    worker = threading.Thread(target=lambda: outcome.append(canary.updater.poll_once()))  # type: ignore[union-attr]
    worker.start()
    deadline = time.monotonic() + 120
    while canary.updater.step != "waiting for the transaction to end":
        assert time.monotonic() < deadline and worker.is_alive(), outcome
        time.sleep(0.1)
    time.sleep(1.0)
    assert canary.lane.model_version == "store-1", "never during a transaction"
    canary.lane.end_transaction(1.0)
    worker.join(timeout=60)
    assert outcome == ["running store-2"]
    assert canary.lane.model_version == "store-2"
    state = UpdateState.load(canary.updates_dir)
    assert state.current is not None and state.current.version == "store-2" and state.trial
    assert [p.name for p in canary.updates_dir.glob("*.tar.gz")] == [
        f"{state.current.sha256}.tar.gz"
    ], "nothing else kept"

    beat(canary)
    store.judge()  # canary healthy for the soak time: next stage, every lane
    assert store.rollout().stage == 1
    assert other.updater.poll_once() == "running store-2"
    beat(other)
    store.judge()
    assert store.rollout().state == "completed"
    assert other.updater.poll_once() == "up to date"


def test_bundle_failing_its_smoke_test_never_goes_live_and_halts_the_rollout(
    store: Store, bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    canary = lane(store, "lane-1", tmp_path, keys, bundles["base"])
    other = lane(store, "lane-2", tmp_path, keys, bundles["base"])
    broken = store.publish(bundles["broken"])
    store.roll_out(broken, ["lane-1"], soak_s=0)
    assert canary.updater is not None and other.updater is not None
    outcome = canary.updater.poll_once()
    assert outcome.startswith("smoke_failed") and "not a detector" in outcome, outcome
    assert canary.lane.model_version == "store-1", "it never went live"
    assert canary.updater.poll_once().startswith("skipped: smoke_failed"), "not tried again"
    doctor = {f.topic: f for f in examine(canary.settings)}["updates"]
    assert doctor.status == "warn" and "smoke_failed" in doctor.detail
    beat(canary)
    store.judge()
    rollout = store.rollout()
    assert rollout.state == "rolled_back" and "smoke_failed" in rollout.reason
    assert other.updater.poll_once() == "up to date", "the rest never got it"


def test_a_bundle_that_crashes_the_lane_is_rolled_back_there_and_everywhere(
    store: Store, bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    canary = lane(store, "lane-1", tmp_path, keys, bundles["base"])
    good = store.publish(bundles["good"])
    store.roll_out(good, ["lane-1"], soak_s=3600)
    assert canary.updater is not None
    assert canary.updater.poll_once() == "running store-2"
    settings = canary.settings
    canary.outbox.close()
    # The lane dies on the new bundle (the process that swapped to it), starts on it again
    # (a power cut would look the same) and dies again before its trial ends: the next start
    # is on the previous bundle, and its heartbeat says why.
    _, slot = bundle_at_start(canary.updates_dir, bundles["base"])
    assert slot is not None and slot.version == "store-2"
    restarted = LaneService(settings)
    assert restarted.lane.model_version == "store-1"
    beat(restarted)
    store.judge()
    rollout = store.rollout()
    assert rollout.state == "rolled_back" and "crashed" in rollout.reason
    assert restarted.updater is not None
    assert restarted.updater.poll_once() == "up to date", "back on the shipped bundle"


KILLED_AT = ("downloading", "verifying", "smoke testing", "waiting for the transaction to end")


@pytest.mark.parametrize("step", KILLED_AT)
def test_killed_at_any_step_the_lane_starts_and_finishes_the_update(
    store: Store, bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path, step: str
) -> None:
    service = lane(store, "lane-1", tmp_path, keys, bundles["base"])
    good = store.publish(bundles["good"])
    store.roll_out(good, ["lane-1"], soak_s=3600)
    settings_json = service.settings.model_dump_json()
    service.outbox.close()
    script = textwrap.dedent(
        f"""
        import logging, sys
        from checkout_node.service import LaneService
        from checkout_node.settings import LaneSettings
        logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s")
        for handler in logging.getLogger().handlers:
            handler.flush = sys.stdout.flush
        service = LaneService(LaneSettings.model_validate_json({settings_json!r}))
        print("result", service.updater.poll_once(), flush=True)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-u", "-c", script], stdout=subprocess.PIPE, text=True, bufsize=1
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip() == f"update step: {step}":
            os.kill(child.pid, signal.SIGKILL)  # the power goes
            break
    child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL, f"never reached {step!r}"
    # The lane starts again on a bundle that works (the old one, or the new one if the swap
    # was recorded before the power went), and finishes the update.
    again = LaneService(service.settings)
    assert again.updater is not None
    if again.lane.model_version == "store-1":
        assert again.updater.poll_once() == "running store-2"
    assert again.updater.poll_once() == "up to date"
    again.outbox.close()
    final = LaneService(service.settings)
    assert final.lane.model_version == "store-2"
    current = UpdateState.load(final.updates_dir).current
    assert current is not None and read_manifest(Path(current.path)).release == 2
    assert not list(final.updates_dir.glob("*.partial")), "nothing half-written left behind"
    final.outbox.close()


def test_it_admin_pauses_promotes_and_rolls_back_from_the_console(
    store: Store, bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    lane(store, "lane-1", tmp_path, keys, bundles["base"])
    lane(store, "lane-2", tmp_path, keys, bundles["base"])
    good = store.publish(bundles["good"])
    create_user(store.engine, "it", "it-admin-password", "it_admin")
    with httpx.Client(base_url=store.url) as browser:
        csrf = sign_in(browser, "it", "it-admin-password")
        page = browser.get("/rollouts")
        assert "store-2" in page.text and 'id="start-rollout"' in page.text
        started = browser.post(
            "/rollouts",
            data={
                "release_id": str(good),
                "canary": "lane-2",
                "shares": "50,100",
                "soak_minutes": "30",
                "csrf_token": csrf,
            },
        )
        assert started.status_code == 303, started.text[:300]
        rollout = store.rollout()
        assert rollout.state == "running" and rollout.stages[0]["lanes"] == ["lane-2"]
        for action, expected in (("pause", "paused"), ("resume", "running")):
            browser.post(f"/rollouts/{rollout.id}/{action}", data={"csrf_token": csrf})
            assert store.rollout(rollout.id).state == expected
        browser.post(f"/rollouts/{rollout.id}/promote", data={"csrf_token": csrf})
        assert store.rollout(rollout.id).stage == 1
        refused = browser.post(f"/rollouts/{rollout.id}/rollback", data={"csrf_token": "x"})
        assert refused.status_code == 403 and store.rollout(rollout.id).state == "running"
        browser.post(
            f"/rollouts/{rollout.id}/rollback",
            data={"csrf_token": csrf, "reason": "checkout complaints"},
        )
        back = store.rollout(rollout.id)
        assert back.state == "rolled_back" and "checkout complaints" in back.reason
        page = browser.get("/rollouts")
        assert "rolled_back" in page.text and "checkout complaints" in page.text
        audit = browser.get("/audit").text
        assert "rollout.rolled_back" in audit and "rollout.promoted" in audit


def test_frames_failing_on_a_new_bundle_roll_the_lane_back_by_itself(
    store: Store, bundles: dict[str, Path], keys: tuple[Path, Path], tmp_path: Path
) -> None:
    canary = lane(store, "lane-1", tmp_path, keys, bundles["base"])
    good = store.publish(bundles["good"])
    store.roll_out(good, ["lane-1"], soak_s=3600)
    assert canary.updater is not None
    assert canary.updater.poll_once() == "running store-2"
    for _ in range(4):  # the camera loop counts each frame the pipeline failed on
        canary.lane.frame_failed()
    assert canary.updater.poll_once() == "rolled back: 4 frames failed on it"
    assert canary.lane.model_version == "store-1"
    assert UpdateState.load(canary.updates_dir).current is None
    assert not list(canary.updates_dir.glob("*.tar.gz")), "the bad bundle is deleted"
    beat(canary)
    store.judge()
    rollout = store.rollout()
    assert rollout.state == "rolled_back" and "4 frames failed" in rollout.reason


def test_first_boot_finds_the_store_server_enrols_and_remembers_it(
    keys: tuple[Path, Path], bundles: dict[str, Path], tmp_path: Path
) -> None:
    from laneguard.discovery import discover_store
    from laneguard.serving import free_port
    from store_server.learning import store_key_id

    database_url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    http_port, udp_port = free_port(), free_port()
    settings = StoreSettings(
        database_url=database_url,
        data_dir=tmp_path / "store",
        port=http_port,
        discovery_port=udp_port,
        store_name="Store 12",
    )
    with serve_store(settings, port=http_port) as base:
        assert base.startswith("https://")
        store_key = store_key_id(settings)
        found = discover_store(store_key, udp_port, timeout_s=5.0)
        assert found is not None and found.url == base and found.store_name == "Store 12"
        assert discover_store(store_key, free_port(), timeout_s=0.5) is None, "nobody there"
        assert discover_store("0123456789abcdef", udp_port, timeout_s=1.0) is None, "other key"
        service = LaneService(
            LaneSettings(
                lane_id="lane-7",
                camera="/dev/null",
                bundle=bundles["base"],
                bundle_keys=[keys[1]],
                server_url="discover",
                discovery_port=udp_port,
                enrolment_token=enrolment_token(database_url, "lane-7", store_key),
                data_dir=tmp_path / "lane-7",
                heartbeat_s=0.5,
                update_poll_s=3600,
            )
        )
        assert service.uploader is None, "nothing to deliver to yet"
        service.start()
        try:
            deadline = time.monotonic() + 60
            while not (tmp_path / "lane-7" / "credential.json").is_file():
                assert time.monotonic() < deadline, "the lane never enrolled"
                time.sleep(0.2)
        finally:
            service.stop()
        pinned = tmp_path / "lane-7" / "store-certificate.pem"
        assert pinned.read_text() == (tmp_path / "store" / "keys" / "tls.crt").read_text()
        again = LaneService(service.settings)  # the next boot asks no one
        assert again.server_url == base and again.uploader is not None
        again.outbox.close()
