"""Chain releases and rollout waves.

HQ publishes a bundle (its slow path's gated candidate, or one an IT admin brings): it signs
the bundle with HQ's key, keeps the file under its hash and tells every store, which fetches
it and checks it against HQ's key. A rollout then orders stores in waves: a canary store,
then shares of the chain. Each ordered store rolls the bundle out to its own lanes (canary
lane, then all), with the store's own health checks and automatic rollback beneath. The wave
moves on when every store in it reports the bundle as its production one and the soak time
has passed; any store in the rollout whose own rollout rolled back halts the chain's, and
every ordered store is told to go back.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, col, select

from hq_server.models import ChainRelease, ChainRollout, Store, StoreStatus
from hq_server.outbox import HqOutbox
from laneguard.bundle import read_manifest, sha256_file
from laneguard.chain import ReleaseDown, RolloutDown
from laneguard.signing import sign_bundle
from product_db.errors import LaneGuardError
from product_db.models import as_utc, utcnow
from store_server.auth import audit

log = logging.getLogger("laneguard.hq.releases")
ACTIVE = ("running", "paused")


class ChainRolloutError(LaneGuardError, ValueError):
    """A release or rollout that cannot be made as asked."""


def release_path(data_dir: Path, sha256: str) -> Path:
    return data_dir / "bundles" / f"{sha256}.tar.gz"


def publish_release(
    session: Session,
    outbox: HqOutbox,
    data_dir: Path,
    bundle: Path,
    key: Ed25519PrivateKey,
    username: str,
    notes: str = "",
    gate_report: dict[str, Any] | None = None,
) -> ChainRelease:
    """Sign ``bundle`` with HQ's key (a copy; the release number one above the newest), keep
    it and announce it to every store. The same bundle twice is one release."""
    manifest = read_manifest(bundle)
    newest = session.exec(select(ChainRelease).order_by(col(ChainRelease.release).desc())).first()
    number = max(manifest.release, (newest.release + 1) if newest else 1)
    folder = data_dir / "bundles"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f"incoming-{os.getpid()}.tar.gz"
    shutil.copyfile(bundle, partial)
    sign_bundle(partial, key, release=number)
    digest = sha256_file(partial)
    existing = session.exec(select(ChainRelease).where(ChainRelease.sha256 == digest)).first()
    if existing is not None:
        partial.unlink()
        return existing
    target = release_path(data_dir, digest)
    os.replace(partial, target)
    os.chmod(target, 0o600)
    release = ChainRelease(
        version=manifest.version,
        release=number,
        sha256=digest,
        size=target.stat().st_size,
        published_by=username,
        notes=notes[:500],
        gate_report=gate_report,
    )
    session.add(release)
    session.flush()
    assert release.id is not None
    outbox.queue(
        session,
        f"release:{release.id}",
        ReleaseDown(
            release_id=release.id,
            version=release.version,
            release=number,
            sha256=digest,
            size=release.size,
            notes=release.notes,
        ),
    )
    audit(session, username, "release.published", release.version, sha256=digest)
    return release


def active_chain_rollout(session: Session) -> ChainRollout | None:
    return session.exec(select(ChainRollout).where(col(ChainRollout.state).in_(ACTIVE))).first()


def _rank(store_id: str) -> str:
    """A fixed, arbitrary order of stores: the same stores form the first share every time."""
    return hashlib.sha256(store_id.encode()).hexdigest()


def plan_waves(
    stores: Sequence[str], canary: Sequence[str], shares: Sequence[float]
) -> list[dict[str, object]]:
    """Canary stores, then each share of all stores (cumulative, the last 1.0)."""
    unknown = sorted(set(canary) - set(stores))
    if not canary or unknown:
        raise ChainRolloutError(
            "choose at least one canary store"
            if not canary
            else f"no enrolled store {', '.join(unknown)}"
        )
    if not shares or shares[-1] != 1.0 or any(not 0 < s <= 1 for s in shares):
        raise ChainRolloutError("wave shares must be between 0 and 1 and end with 1.0")
    waves: list[dict[str, object]] = [{"name": "canary", "stores": sorted(set(canary))}]
    ranked = sorted(stores, key=_rank)
    seen = set(canary)
    for share in shares:
        count = max(1, round(share * len(ranked)))
        wave = [s for s in ranked[:count] if s not in seen]
        seen.update(wave)
        if wave:
            waves.append({"name": f"{round(100 * share)}% of stores", "stores": sorted(wave)})
    return waves


def start_chain_rollout(
    session: Session,
    outbox: HqOutbox,
    release_id: int,
    canary: Sequence[str],
    username: str,
    shares: Sequence[float] = (0.5, 1.0),
    soak_s: float = 600.0,
    store_soak_s: float = 60.0,
) -> ChainRollout:
    release = session.get(ChainRelease, release_id)
    if release is None:
        raise ChainRolloutError(f"no release with id {release_id}")
    if active_chain_rollout(session) is not None:
        raise ChainRolloutError("another chain rollout is in progress: finish or halt it first")
    stores = list(session.exec(select(Store.store_id).where(Store.active == True)))  # noqa: E712
    waves = plan_waves(stores, canary, shares)
    previous = session.exec(
        select(ChainRollout)
        .where(ChainRollout.state == "completed")
        .order_by(col(ChainRollout.id).desc())
    ).first()
    rollout = ChainRollout(
        release_id=release_id,
        previous_id=previous.release_id if previous else None,
        waves=waves,
        soak_s=soak_s,
        created_by=username,
    )
    session.add(rollout)
    session.flush()
    _order(session, outbox, rollout, release, 0, store_soak_s)
    audit(session, username, "chain_rollout.started", release.version, waves=waves)
    return rollout


def _wave_stores(rollout: ChainRollout, wave: int) -> list[str]:
    stores = rollout.waves[wave]["stores"]
    assert isinstance(stores, list)
    return [str(s) for s in stores]


def _order(
    session: Session,
    outbox: HqOutbox,
    rollout: ChainRollout,
    release: ChainRelease,
    wave: int,
    store_soak_s: float,
    action: str = "install",
    reason: str = "",
) -> None:
    assert rollout.id is not None
    stores = (
        _wave_stores(rollout, wave)
        if action == "install"
        else [s for w in range(wave + 1) for s in _wave_stores(rollout, w)]
    )
    for store_id in stores:
        outbox.queue(
            session,
            f"rollout:{rollout.id}:{wave}:{action}:{store_id}",
            RolloutDown(
                store_id=store_id,
                rollout_id=rollout.id,
                action=action,
                sha256=release.sha256,
                version=release.version,
                soak_s=store_soak_s,
                reason=reason,
            ),
            store_id=store_id,
        )


def halt(
    session: Session, outbox: HqOutbox, rollout: ChainRollout, username: str, reason: str
) -> None:
    """Stop the chain's rollout and send every store ordered so far back."""
    release = session.get(ChainRelease, rollout.release_id)
    assert release is not None
    rollout.state, rollout.finished_at, rollout.reason = "rolled_back", utcnow(), reason[:500]
    session.add(rollout)
    _order(session, outbox, rollout, release, rollout.wave, 0, action="rollback", reason=reason)
    audit(session, username, "chain_rollout.rolled_back", str(rollout.id), reason=reason)
    log.warning("chain rollout %s halted: %s", rollout.id, reason)


def evaluate_waves(
    session: Session, outbox: HqOutbox, now: datetime | None = None, store_soak_s: float = 60.0
) -> str | None:
    """One look at the running rollout: halt it, move it a wave on, or finish it. Returns
    what happened (None: nothing)."""
    rollout = active_chain_rollout(session)
    if rollout is None or rollout.state != "running":
        return None
    release = session.get(ChainRelease, rollout.release_id)
    assert release is not None
    now = now or utcnow()
    ordered = [s for w in range(rollout.wave + 1) for s in _wave_stores(rollout, w)]
    statuses = {
        s.store_id: s
        for s in session.exec(select(StoreStatus).where(col(StoreStatus.store_id).in_(ordered)))
    }
    for store_id in ordered:
        state = (statuses[store_id].rollout or {}) if store_id in statuses else {}
        if state.get("sha256") == release.sha256 and state.get("state") == "rolled_back":
            reason = f"store {store_id} rolled back: {state.get('reason') or 'lane health'}"
            halt(session, outbox, rollout, "hq", reason)
            return "rolled_back"
    current = _wave_stores(rollout, rollout.wave)
    done = all(
        store_id in statuses and statuses[store_id].production_sha256 == release.sha256
        for store_id in current
    )
    soaked = (now - as_utc(rollout.wave_started_at)).total_seconds() >= rollout.soak_s
    if not (done and soaked):
        return None
    if rollout.wave + 1 >= len(rollout.waves):
        rollout.state, rollout.finished_at = "completed", now
        session.add(rollout)
        audit(session, "hq", "chain_rollout.completed", str(rollout.id))
        return "completed"
    rollout.wave += 1
    rollout.wave_started_at = now
    session.add(rollout)
    _order(session, outbox, rollout, release, rollout.wave, store_soak_s)
    audit(session, "hq", "chain_rollout.wave", str(rollout.id), wave=rollout.wave)
    return "next_wave"
