"""The lane updater: takes the bundle the store server assigns to this lane, safely.

Steps, each of which may be cut short by a power loss without leaving the lane unable to start:

1. download to ``updates/<sha256>.tar.gz.partial``, resuming with an HTTP range request, then
   check size and sha256 and rename it into place (a rename is atomic);
2. verify the signature and anti-rollback against the lane's ``bundle_keys`` (a lane with
   none refuses every bundle from the store, unless ``allow_unsigned_bundles`` says otherwise);
3. smoke-test it in a child process on golden frames (checkout_node.smoke_test);
4. load it and hand the new pipeline to the lane, which swaps between transactions;
5. once live, record it in ``updates/state.json`` (written to a temporary file, synced, renamed)
   as the current bundle, the one before kept as previous, on trial.

The state file is the only thing the lane starts from, and it only ever names files that are
complete and checked. A bundle on trial that is running when the lane starts again counts a
boot; two boots without reaching the end of the trial mean it crashed the lane, and the lane
starts on the previous bundle instead. During the trial, frames that fail roll it back too.
A bundle that failed anywhere is not tried again until the store offers a different one.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from checkout_node.bundle_trust import remember_release, verify_bundle
from checkout_node.polling import poll_until_stopped
from checkout_node.smoke_test import SmokeResult, run_smoke_test
from laneguard.bundle import BundleError, read_manifest, sha256_file
from laneguard.files import sync_dir, write_json_atomic
from laneguard.signing import SigningKeyError
from product_db.errors import LaneGuardError

log = logging.getLogger("laneguard.node.updater")
STATE_FILE = "state.json"
CRASH_BOOTS = 2  # boots on a trial bundle that never finished its trial: it crashes the lane


class UpdateError(LaneGuardError, RuntimeError):
    """A step failed; the message says which and why."""


@dataclass
class Slot:
    sha256: str
    version: str
    release: int
    path: str


@dataclass
class UpdateState:
    current: Slot | None = None  # None: the bundle in the lane's settings (shipped)
    previous: Slot | None = None
    trial: bool = False
    boots_on_trial: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # sha256 -> why
    report: dict[str, str] | None = None  # the last verdict, for the heartbeat

    @classmethod
    def load(cls, folder: Path) -> UpdateState:
        path = folder / STATE_FILE
        if not path.is_file():
            return cls()
        raw = json.loads(path.read_text("utf-8"))
        for key in ("current", "previous"):
            raw[key] = Slot(**raw[key]) if raw.get(key) else None
        return cls(**raw)

    def record(self, sha256: str, verdict: str, detail: str) -> None:
        """A bundle that failed here: the verdict for the heartbeat, and never again."""
        self.failed[sha256] = f"{verdict}: {detail}"[:480]
        self.report = {"sha256": sha256, "state": verdict, "detail": detail[:480]}

    def give_up_current(self, verdict: str, detail: str) -> Slot:
        """Back to the previous bundle (None: the configured one); returns the one given up."""
        bad = self.current
        assert bad is not None
        self.record(bad.sha256, verdict, detail)
        self.current, self.previous = self.previous, None
        self.trial, self.boots_on_trial = False, 0
        return bad

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / STATE_FILE, asdict(self))


def bundle_at_start(folder: Path, base: Path) -> tuple[Path, Slot | None]:
    """The bundle the lane starts on, after counting this boot against a trial bundle and
    going back to the previous one if the trial bundle keeps the lane from running."""
    state = UpdateState.load(folder)
    if state.current is not None and not Path(state.current.path).is_file():
        state.current, state.trial = state.previous, False  # removed by hand: fall back
    if state.trial and state.current is not None:
        state.boots_on_trial += 1
        if state.boots_on_trial >= CRASH_BOOTS:
            reason = f"the lane stopped {CRASH_BOOTS} times while running it"
            bad = state.give_up_current("crashed", reason)
            log.error("bundle %s crashed the lane; starting on the previous one", bad.version)
    state.save(folder)
    current = state.current
    return (Path(current.path), current) if current is not None else (base, None)


def download(
    client: httpx.Client,
    url: str,
    sha256: str,
    size: int,
    folder: Path,
    headers: dict[str, str],
    on_progress: Callable[[int], None] | None = None,
) -> Path:
    """The bundle at ``url`` as ``folder/<sha256>.tar.gz``, resumed from what an interrupted
    download left, checked against its size and hash."""
    target = folder / f"{sha256}.tar.gz"
    if target.is_file():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"{sha256}.tar.gz.partial"
    have = partial.stat().st_size if partial.exists() else 0
    if have > size:
        partial.unlink()
        have = 0
    if have < size:
        request_headers = dict(headers)
        if have:
            request_headers["Range"] = f"bytes={have}-"
        with client.stream("GET", url, headers=request_headers) as reply:
            if reply.status_code == 200 and have:
                have = 0  # the server sent it whole: start again
            elif reply.status_code not in (200, 206):
                raise UpdateError(f"download {url}: HTTP {reply.status_code}")
            with partial.open("r+b" if have else "wb") as handle:
                handle.seek(have)
                handle.truncate()
                for chunk in reply.iter_bytes(1 << 16):
                    handle.write(chunk)
                    have += len(chunk)
                    if on_progress is not None:
                        on_progress(have)
                handle.flush()
                os.fsync(handle.fileno())
    if have != size:
        raise UpdateError(f"download {url}: got {have} bytes, expected {size}")
    digest = sha256_file(partial)
    if digest != sha256:
        partial.unlink()
        raise UpdateError(f"download {url}: sha256 {digest} does not match {sha256}")
    os.replace(partial, target)
    sync_dir(folder)
    return target


def prune(folder: Path, state: UpdateState) -> None:
    """Delete downloaded bundles the lane can no longer go back to (current and previous stay),
    once the state file no longer names them."""
    keep = {Path(slot.path).name for slot in (state.current, state.previous) if slot}
    for path in folder.glob("*.tar.gz"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


@dataclass
class UpdaterConfig:
    poll_s: float = 30.0
    trial_s: float = 300.0  # healthy this long on a new bundle and it is kept
    max_frame_errors: int = 3  # frames failing during the trial: roll back
    smoke_timeout_s: float = 600.0
    allow_unsigned: bool = False  # with no bundle_keys: take unsigned bundles (lab lanes only)


# Hooks the lane service provides: build a pipeline for a bundle and stage it (it calls back
# once the bundle is live), and the running bundle's count of failed frames.
StageBundle = Callable[[Path, Callable[[], None]], None]


class LaneUpdater:
    """Polls the store server for this lane's bundle and takes it through the steps."""

    def __init__(
        self,
        server_url: str,
        credential: Callable[[], str | None],
        folder: Path,
        data_dir: Path,
        base_bundle: Path,
        base_sha256: str,
        running: Slot | None,
        stage: StageBundle,
        frame_errors: Callable[[], int],
        bundle_keys: list[Path],
        profile: str | None,
        config: UpdaterConfig | None = None,
        pinned_version: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        # ``transport``: the store link's (pinned certificate); None: httpx's own.
        self.client = httpx.Client(
            base_url=server_url.rstrip("/"), timeout=30.0, transport=transport
        )
        self.credential, self.folder, self.data_dir = credential, folder, data_dir
        self.base_bundle, self.stage, self.frame_errors = base_bundle, stage, frame_errors
        self.bundle_keys, self.profile, self.pinned_version = bundle_keys, profile, pinned_version
        self.config = config or UpdaterConfig()
        self.running = running
        self.base_sha256 = base_sha256
        self._trial_started = time.monotonic()
        self._live = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.step = "idle"  # what the updater is doing (logged as it changes)

    def _step(self, step: str) -> None:
        self.step = step
        log.info("update step: %s", step)

    # -- what the heartbeat reports ----------------------------------------------------------
    @property
    def running_sha256(self) -> str:
        return self.running.sha256 if self.running is not None else self.base_sha256

    def report(self) -> dict[str, str] | None:
        return UpdateState.load(self.folder).report

    # -- one pass ---------------------------------------------------------------------------
    def poll_once(self) -> str:
        """Ask for this lane's bundle and act; returns what happened (for tests and logs)."""
        state = UpdateState.load(self.folder)
        outcome = self._watch_trial(state)
        if outcome:
            return outcome
        credential = self.credential()
        if credential is None:
            return "not enrolled"
        headers = {"Authorization": f"Bearer {credential}"}
        reply = self.client.get("/api/v1/lane/bundle", headers=headers)
        reply.raise_for_status()
        desired: dict[str, Any] = reply.json()
        wanted = desired["sha256"] or self.base_sha256
        if wanted == self.running_sha256:
            if desired["final"] and self.running is not None and self.bundle_keys:
                remember_release(self.data_dir, read_manifest(Path(self.running.path)))
            return "up to date"
        if wanted in state.failed:
            return f"skipped: {state.failed[wanted]}"
        if desired["sha256"] is None:
            return self._take(state, None, self.base_bundle)
        self._step("downloading")
        try:
            path = download(
                self.client,
                desired["url"],
                wanted,
                int(desired["size"]),
                self.folder,
                headers,
            )
        except (httpx.HTTPError, UpdateError, OSError) as error:
            log.warning("update download failed (will resume): %s", error)
            self._step("idle")
            return f"download failed: {error}"
        manifest = read_manifest(path)
        slot = Slot(wanted, manifest.version, manifest.release, str(path))
        return self._take(state, slot, path)

    def _take(self, state: UpdateState, slot: Slot | None, path: Path) -> str:
        sha = slot.sha256 if slot is not None else self.base_sha256
        self._step("verifying")
        if self.bundle_keys:
            try:
                verify_bundle(path, self.bundle_keys, self.data_dir, self.pinned_version)
            except (BundleError, SigningKeyError) as error:
                return self._fail(state, sha, "refused", str(error))
        elif slot is not None and not self.config.allow_unsigned:
            return self._fail(
                state,
                sha,
                "refused",
                "this lane trusts no bundle signing key (bundle_keys), so it takes no bundle "
                "from the store; set bundle_keys (allow_unsigned_bundles only on a lab lane)",
            )
        self._step("smoke testing")
        smoke: SmokeResult = run_smoke_test(
            path, self.profile, timeout_s=self.config.smoke_timeout_s
        )
        if not smoke.passed:
            return self._fail(state, sha, "smoke_failed", "; ".join(smoke.reasons))
        self._step("waiting for the transaction to end")
        try:
            live = self._swap_to(path)
        except Exception as error:  # a bundle the lane cannot load is a failed bundle
            return self._fail(state, sha, "smoke_failed", f"could not load: {error}")
        if not live:
            return "stopped before the swap"
        state = UpdateState.load(self.folder)
        state.previous, state.current = state.current, slot
        state.trial, state.boots_on_trial = slot is not None, 0
        state.report = {"sha256": sha, "state": "running", "detail": str(smoke.metrics)[:400]}
        state.save(self.folder)
        prune(self.folder, state)
        self.running = slot
        self._trial_started = time.monotonic()
        self._step("idle")
        version = slot.version if slot is not None else "the shipped bundle"
        log.info("now running %s", version)
        return f"running {version}"

    def _swap_to(self, path: Path) -> bool:
        """Hand ``path`` to the lane and wait until it is live (the transaction has ended);
        False if the updater is stopped first."""
        self._live.clear()
        self.stage(path, self._live.set)
        while not self._live.wait(0.5):
            if self._stop.is_set():
                return False
        return True

    def _fail(self, state: UpdateState, sha: str, verdict: str, detail: str) -> str:
        state.record(sha, verdict, detail)
        state.save(self.folder)
        self._step("idle")
        log.error("bundle %s %s: %s", sha[:12], verdict, detail)
        return f"{verdict}: {detail}"

    def _watch_trial(self, state: UpdateState) -> str | None:
        """During a trial: roll back on failing frames, keep the bundle once the trial ends."""
        if not state.trial or state.current is None:
            return None
        errors = self.frame_errors()
        if errors > self.config.max_frame_errors:
            detail = f"{errors} frames failed on it"
            back = Path(state.previous.path) if state.previous else self.base_bundle
            self._swap_to(back)
            bad = state.give_up_current("rolled_back", detail)
            state.save(self.folder)
            prune(self.folder, state)
            self.running = state.current
            log.error("rolled back from %s: %s", bad.version, detail)
            return f"rolled back: {detail}"
        if time.monotonic() - self._trial_started >= self.config.trial_s:
            state.trial, state.boots_on_trial = False, 0
            state.save(self.folder)
            return "trial passed"
        return None

    # -- thread ------------------------------------------------------------------------------
    def run(self) -> None:
        errors = (httpx.HTTPError, BundleError, ValueError, KeyError, OSError)
        poll_until_stopped(self._stop, self.poll_once, self.config.poll_s, errors, "update check")

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="updater", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self.client.close()
