"""Publishing model bundles to the store's lanes, in stages, with automatic halt and rollback.

A published bundle goes to canary lanes first, then to growing shares of the rest. Every lane
reports what it runs in its heartbeat (bundle hash, frames that failed, alerts and transactions
since that bundle went live, frames per second) and what its updater made of an offered bundle
(refused, failed its smoke test, rolled back, crashed). A stage whose lanes stay healthy for
the soak time is promoted; one bad lane halts the rollout and every lane goes back to the
previous bundle. IT admins can pause, promote and roll back from the console.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.bundle import SIGNATURE, read_manifest, sha256_file
from laneguard.signing import BundleTrust
from product_db.errors import LaneGuardError
from product_db.models import as_utc, utcnow
from store_server.auth import audit
from store_server.background import PeriodicLoop
from store_server.models import BundleRelease, Lane, LaneHealth, Rollout

log = logging.getLogger("laneguard.rollouts")
ACTIVE = ("running", "paused")
FAILED_UPDATES = ("refused", "smoke_failed", "rolled_back", "crashed")


class RolloutError(LaneGuardError, ValueError):
    """A rollout request that cannot be carried out (the message says why)."""


@dataclass(frozen=True)
class HealthLimits:
    """When a lane on the new bundle counts as unhealthy."""

    min_fps: float = 5.0  # with its camera up
    max_frame_errors: int = 3  # frames that failed since the bundle went live
    alert_rate_ratio: float = 3.0  # alerts per transaction against the lanes not on it ...
    alert_rate_floor: float = 0.3  # ... and never judged below this rate
    min_transactions: int = 10  # before the alert rate is judged
    silent_s: float = 120.0  # no heartbeat this long after taking the bundle: crashed


def bundles_dir(data_dir: Path) -> Path:
    return data_dir / "bundles"


def bundle_path(data_dir: Path, release: BundleRelease) -> Path:
    return bundles_dir(data_dir) / f"{release.sha256}.tar.gz"


def publish_bundle(
    session: Session,
    data_dir: Path,
    bundle: Path,
    username: str,
    notes: str = "",
    trusted_keys: Sequence[Path] = (),
    gate_report: dict[str, Any] | None = None,
) -> BundleRelease:
    """Check ``bundle`` (readable manifest; signature when keys are given), copy it into the
    store's bundle folder under its hash and record it. Publishing the same file twice returns
    the release already recorded."""
    manifest = read_manifest(bundle)
    signer = _signer(bundle)
    if trusted_keys:
        BundleTrust.from_files(list(trusted_keys)).check_signature(bundle)
    digest = sha256_file(bundle)
    existing = session.exec(select(BundleRelease).where(BundleRelease.sha256 == digest)).first()
    if existing is not None:
        return existing
    target = bundles_dir(data_dir) / f"{digest}.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(bundle, partial)
    os.replace(partial, target)
    release = BundleRelease(
        version=manifest.version,
        release=manifest.release,
        sha256=digest,
        size=target.stat().st_size,
        signed_by=signer,
        published_by=username,
        notes=notes,
        gate_report=gate_report,
    )
    session.add(release)
    session.flush()
    audit(session, username, "bundle.published", manifest.version, sha256=digest)
    return release


def _signer(bundle: Path) -> str | None:
    try:
        with tarfile.open(bundle, "r:gz") as tar:
            member = tar.extractfile(SIGNATURE)
            return str(json.loads(member.read())["key_id"]) if member else None
    except (KeyError, ValueError, tarfile.TarError, OSError):
        return None


def production(session: Session) -> BundleRelease | None:
    """The bundle every lane runs outside a rollout: the newest completed one (None: the
    bundle the lanes shipped with)."""
    done = session.exec(
        select(Rollout)
        .where(Rollout.state == "completed")
        .order_by(col(Rollout.finished_at).desc(), col(Rollout.id).desc())
    ).first()
    return session.get(BundleRelease, done.release_id) if done is not None else None


def production_bundle(session: Session, data_dir: Path, shipped: Path) -> Path:
    """The file of the bundle every lane runs outside a rollout: the newest completed
    rollout's, or ``shipped`` (the store's ``bundle`` setting, else the shipped bundle) before
    the first; ``shipped`` too when a release's file went missing from the bundle folder."""
    release = production(session)
    if release is not None and bundle_path(data_dir, release).is_file():
        return bundle_path(data_dir, release)
    return shipped


def active_rollout(session: Session) -> Rollout | None:
    return session.exec(select(Rollout).where(col(Rollout.state).in_(ACTIVE))).first()


def start_rollout(
    session: Session,
    release_id: int,
    canary_lanes: Sequence[str],
    username: str,
    shares: Sequence[float] = (0.5, 1.0),
    soak_s: float = 1800.0,
) -> Rollout:
    """Canary lanes first, then each share of all lanes in turn (the last must be 1.0)."""
    release = session.get(BundleRelease, release_id)
    if release is None:
        raise RolloutError(f"no published bundle with id {release_id}")
    if active_rollout(session) is not None:
        raise RolloutError("another rollout is in progress: finish or roll it back first")
    current = production(session)
    if current is not None and current.id == release.id:
        raise RolloutError(f"bundle {release.version} is already what every lane runs")
    lanes = _active_lanes(session)
    unknown = sorted(set(canary_lanes) - set(lanes))
    if not canary_lanes or unknown:
        raise RolloutError(
            "choose at least one canary lane"
            if not canary_lanes
            else f"no active lane {', '.join(unknown)}"
        )
    if not shares or shares[-1] != 1.0 or any(not 0 < s <= 1 for s in shares):
        raise RolloutError("stage shares must be between 0 and 1 and end with 1.0 (all lanes)")
    stages: list[dict[str, object]] = [{"name": "canary", "lanes": sorted(set(canary_lanes))}]
    stages += [{"name": f"{round(100 * share)}% of lanes", "share": share} for share in shares]
    rollout = Rollout(
        release_id=release.id or 0,
        previous_id=current.id if current is not None else None,
        stages=stages,
        soak_s=soak_s,
        created_by=username,
    )
    session.add(rollout)
    session.flush()
    audit(session, username, "rollout.started", release.version, stages=stages)
    return rollout


def _active_lanes(session: Session) -> list[str]:
    return list(session.exec(select(Lane.lane_id).where(Lane.active).order_by(Lane.lane_id)))


def _rank(lane_id: str) -> str:
    """A fixed, even spread of lanes over the share stages."""
    return hashlib.sha256(lane_id.encode()).hexdigest()


def stage_lanes(rollout: Rollout, lanes: Sequence[str]) -> set[str]:
    """The lanes that have the new bundle at the rollout's current stage (earlier stages'
    lanes stay in)."""
    ordered = sorted(lanes, key=_rank)
    chosen: set[str] = set()
    for spec in rollout.stages[: rollout.stage + 1]:
        if "lanes" in spec:
            chosen |= {str(lane) for lane in spec["lanes"]}  # type: ignore[attr-defined]
        else:
            share = float(spec["share"])  # type: ignore[arg-type]
            chosen |= set(ordered[: math.ceil(share * len(ordered))])
    return chosen & set(lanes)


@dataclass(frozen=True)
class DesiredBundle:
    release: BundleRelease | None  # None: the bundle the lane shipped with
    rollout_id: int | None
    final: bool  # production: the lane may raise its anti-rollback minimum to it


def desired_bundle(session: Session, lane_id: str) -> DesiredBundle:
    """What ``lane_id`` should run now."""
    rollout = active_rollout(session)
    if rollout is not None:
        if lane_id in stage_lanes(rollout, _active_lanes(session)):
            return DesiredBundle(session.get(BundleRelease, rollout.release_id), rollout.id, False)
        previous = session.get(BundleRelease, rollout.previous_id) if rollout.previous_id else None
        return DesiredBundle(previous, rollout.id, previous is not None)
    return DesiredBundle(production(session), None, True)


def stage_health(
    session: Session, rollout: Rollout, limits: HealthLimits, now: datetime | None = None
) -> dict[str, Any]:
    """Each lane of the current stage: on the new bundle yet, and whether it is healthy."""
    now = now or utcnow()
    release = session.get(BundleRelease, rollout.release_id)
    assert release is not None
    lanes = _active_lanes(session)
    members = stage_lanes(rollout, lanes)
    health = {h.lane_id: h for h in session.exec(select(LaneHealth))}
    others = [health[lane] for lane in lanes if lane not in members and lane in health]
    baseline = _alert_rate(others)
    report: dict[str, Any] = {"lanes": {}, "problems": [], "all_on_bundle": True}
    for lane in sorted(members):
        h = health.get(lane)
        on_bundle = h is not None and h.bundle_sha256 == release.sha256
        problem = _lane_problem(h, release.sha256, on_bundle, limits, baseline, now)
        report["lanes"][lane] = {
            "on_bundle": on_bundle,
            "fps": round(h.fps, 1) if h is not None else None,
            "frame_errors": h.frame_errors if h is not None else None,
            "problem": problem,
        }
        if problem is not None:
            report["problems"].append(f"lane {lane}: {problem}")
        report["all_on_bundle"] = report["all_on_bundle"] and on_bundle
    return report


def _alert_rate(healths: Sequence[LaneHealth]) -> float | None:
    transactions = sum(h.transactions for h in healths)
    return sum(h.alerts_raised for h in healths) / transactions if transactions else None


def _lane_problem(
    h: LaneHealth | None,
    sha256: str,
    on_bundle: bool,
    limits: HealthLimits,
    baseline_rate: float | None,
    now: datetime,
) -> str | None:
    if h is None:
        return None
    update = h.update or {}
    if update.get("sha256") == sha256 and update.get("state") in FAILED_UPDATES:
        return f"{update.get('state')}: {update.get('detail', '')}".strip(": ")
    if not on_bundle:
        return None
    seen = as_utc(h.last_seen)
    if (now - seen).total_seconds() > limits.silent_s:
        return f"silent for {round((now - seen).total_seconds())} s on the new bundle"
    if h.frame_errors > limits.max_frame_errors:
        return f"{h.frame_errors} frames failed on the new bundle"
    if h.camera == "up" and h.uptime_s > 30 and h.fps < limits.min_fps:
        return f"{h.fps:.1f} frames/s on the new bundle (minimum {limits.min_fps})"
    transactions = h.transactions
    if transactions >= limits.min_transactions:
        rate = h.alerts_raised / transactions
        allowed = max(limits.alert_rate_floor, limits.alert_rate_ratio * (baseline_rate or 0.0))
        if rate > allowed:
            return f"{rate:.2f} alerts per transaction on the new bundle (allowed {allowed:.2f})"
    return None


def evaluate(
    session: Session, limits: HealthLimits, now: datetime | None = None
) -> tuple[Rollout, str] | None:
    """Advance the active rollout by its lanes' health: halt and roll back on a problem,
    promote a stage that stayed healthy for the soak time. Returns what was done, if anything."""
    now = now or utcnow()
    rollout = active_rollout(session)
    if rollout is None:
        return None
    report = stage_health(session, rollout, limits, now)
    if report["problems"]:
        reason = "; ".join(report["problems"])[:480]
        roll_back(session, rollout, "laneguard", f"halted automatically: {reason}")
        return rollout, "rolled_back"
    if rollout.state != "running" or not report["all_on_bundle"]:
        return None
    if now - as_utc(rollout.stage_started_at) < timedelta(seconds=rollout.soak_s):
        return None
    promote(session, rollout, "laneguard")
    return rollout, rollout.state


def promote(session: Session, rollout: Rollout, username: str) -> None:
    if rollout.state not in ACTIVE:
        raise RolloutError(f"rollout {rollout.id} is {rollout.state}")
    if rollout.stage + 1 >= len(rollout.stages):
        rollout.state, rollout.finished_at = "completed", utcnow()
        rollout.reason = f"completed by {username}"
    else:
        rollout.stage += 1
        rollout.stage_started_at = utcnow()
    session.add(rollout)
    audit(session, username, "rollout.promoted", str(rollout.id), stage=rollout.stage)


def pause(session: Session, rollout: Rollout, username: str, paused: bool = True) -> None:
    """A paused rollout is never promoted automatically; problems still roll it back."""
    if rollout.state not in ACTIVE:
        raise RolloutError(f"rollout {rollout.id} is {rollout.state}")
    rollout.state = "paused" if paused else "running"
    if not paused:
        rollout.stage_started_at = utcnow()
    session.add(rollout)
    audit(session, username, "rollout.paused" if paused else "rollout.resumed", str(rollout.id))


def roll_back(session: Session, rollout: Rollout, username: str, reason: str) -> None:
    """Every lane goes back to the bundle it ran before the rollout."""
    if rollout.state not in ACTIVE:
        raise RolloutError(f"rollout {rollout.id} is {rollout.state}")
    rollout.state, rollout.finished_at, rollout.reason = "rolled_back", utcnow(), reason
    session.add(rollout)
    audit(session, username, "rollout.rolled_back", str(rollout.id), reason=reason)
    log.warning("rollout %s rolled back: %s", rollout.id, reason)


class RolloutLoop(PeriodicLoop):
    """Judges the active rollout every ``every_s`` in a background thread."""

    def __init__(self, engine: Engine, limits: HealthLimits, every_s: float = 5.0) -> None:
        self.engine, self.limits = engine, limits
        super().__init__("rollouts", self.run_once, every_s)

    def run_once(self) -> tuple[Rollout, str] | None:
        with Session(self.engine) as session:
            done = evaluate(session, self.limits)
            session.commit()
            return done
