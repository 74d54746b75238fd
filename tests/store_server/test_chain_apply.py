"""A store applying HQ's rollout orders to its own lanes: an install starts a rollout with a
canary lane; HQ halting the wave after every lane took the bundle sends the lanes back to what
they ran before (here the bundle they shipped with); an order for a release not yet fetched
waits (it is delivered again); another store's order, copied onto this store's subject or the
chain-wide one, is refused."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from laneguard.chain import ChainMessageError, RolloutDown, seal
from product_db.db import make_engine
from store_server.chain_apply import ChainApplier
from store_server.db import migrate
from store_server.models import BundleRelease, Lane, Rollout
from store_server.rollouts import active_rollout, desired_bundle, production


def test_hq_orders_install_and_then_take_back_a_release(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    hq = Ed25519PrivateKey.generate()

    def no_fetch(_sha: str, _size: int, _target: Path) -> None:
        raise AssertionError("no release file in this test")

    applier = ChainApplier(engine, tmp_path, "S1", hq.public_key(), tmp_path / "hq.pub", no_fetch)
    sha = "ab" * 32
    order = RolloutDown(
        store_id="S1", rollout_id=1, action="install", sha256=sha, version="v2", soak_s=0
    )
    with pytest.raises(RuntimeError, match="has not arrived"):
        applier.handle("lg.hq.store.S1.rollout", seal("hq", "hq:rollout:1", order, hq))
    with Session(engine) as session:
        session.add(Lane(lane_id="lane-1", name="Lane 1", credential_sha256="x" * 64))
        session.add(BundleRelease(version="v2", release=2, sha256=sha, size=1, published_by="hq"))
        session.commit()
    applier.handle("lg.hq.store.S1.rollout", seal("hq", "hq:rollout:1", order, hq))
    applier.handle("lg.hq.store.S1.rollout", seal("hq", "hq:rollout:1", order, hq))  # again
    with Session(engine) as session:
        rollouts = list(session.exec(select(Rollout)))
        assert len(rollouts) == 1 and rollouts[0].stages[0]["lanes"] == ["lane-1"]
        assert desired_bundle(session, "lane-1").release is not None
        rollouts[0].state = "completed"  # every lane took it
        session.add(rollouts[0])
        session.commit()
        current = production(session)
        assert current is not None and current.sha256 == sha

    back = order.model_copy(update={"action": "rollback", "reason": "store B rolled back"})
    applier.handle("lg.hq.store.S1.rollout", seal("hq", "hq:rollout:1:back", back, hq))
    with Session(engine) as session:
        assert production(session) is None and active_rollout(session) is None
        assert desired_bundle(session, "lane-1").release is None  # the shipped bundle again
        rollout = session.exec(select(Rollout)).one()
        assert rollout.state == "rolled_back" and "store B" in rollout.reason
    engine.dispose()


def test_a_copied_rollout_or_rollback_order_is_refused(database_url: str, tmp_path: Path) -> None:
    """HQ's signed order for store A, as anyone on the broker could copy it: onto store B's own
    subject, onto the chain-wide subject every store reads, or with its subject made B's. B
    starts nothing and rolls nothing back, and B's own order still works."""
    engine = make_engine(database_url)
    migrate(engine)
    hq = Ed25519PrivateKey.generate()

    def no_fetch(_sha: str, _size: int, _target: Path) -> None:
        raise AssertionError("no release file in this test")

    store_b = ChainApplier(engine, tmp_path, "B", hq.public_key(), tmp_path / "hq.pub", no_fetch)
    sha = "cd" * 32
    with Session(engine) as session:
        session.add(Lane(lane_id="lane-1", name="Lane 1", credential_sha256="x" * 64))
        session.add(BundleRelease(version="v3", release=3, sha256=sha, size=1, published_by="hq"))
        session.commit()
    for_a = RolloutDown(
        store_id="A", rollout_id=4, action="install", sha256=sha, version="v3", soak_s=0
    )
    rollback_for_a = for_a.model_copy(update={"action": "rollback", "reason": "A's soak failed"})
    for body, name in ((for_a, "install"), (rollback_for_a, "rollback")):
        sealed = seal("hq", f"rollout:4:0:{name}:A", body, hq)
        for subject in ("lg.hq.store.B.rollout", "lg.hq.all.rollout", "lg.hq.store.A.rollout"):
            with pytest.raises(ChainMessageError, match="for store 'A', not this one"):
                store_b.handle(subject, sealed)
    with Session(engine) as session:
        assert list(session.exec(select(Rollout))) == []
    for_b = for_a.model_copy(update={"store_id": "B"})
    with pytest.raises(ChainMessageError, match=re.escape("not 'lg.hq.store.B.rollout'")):
        store_b.handle("lg.hq.all.rollout", seal("hq", "rollout:4:0:install:B", for_b, hq))
    store_b.handle("lg.hq.store.B.rollout", seal("hq", "rollout:4:0:install:B", for_b, hq))
    with Session(engine) as session:
        assert active_rollout(session) is not None
    engine.dispose()
