"""A learned entry goes chain-wide only when a second store learned the same product alike or
a person at HQ confirmed it (hq_server.gallery_release): one store's lane that scans a code
over another product (the second review's wine-as-tomato poisoning) teaches only its own
store, however many transactions it invents. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session, col, select

from hq_server.db import migrate
from hq_server.gallery_release import GalleryReleaseError, confirm, held_entries
from hq_server.models import Broadcast, ChainGalleryEntry
from laneguard.chain import GalleryUp, seal, store_subject
from product_db.db import make_engine
from store_server.models import AuditEntry
from tests.helpers.chain import hq_with_stores

TOMATO = "4664"


def _unit(vector: np.ndarray) -> str:
    vector = vector.astype("<f4") / np.linalg.norm(vector)
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()


def test_one_store_alone_teaches_no_other_store(database_url: str, tmp_path: Path) -> None:
    engine, intake, keys = hq_with_stores(database_url, tmp_path / "media")
    rng = np.random.default_rng(7)
    wine, tomato = rng.normal(size=128), rng.normal(size=128)

    def learned(store: str, entry_id: int, vector: np.ndarray) -> None:
        body = GalleryUp(
            entry_id=entry_id,
            code=TOMATO,
            vector=_unit(vector),
            embedder_sha256="e" * 64,
            transaction_id=f"{store}-tx-{entry_id}",
            lane_id=f"lane-{store}",
        )
        message = seal(store, f"{store}:gallery:{entry_id}", body, keys[store])
        intake.handle(store_subject(store, "gallery"), message)

    def sent() -> list[str]:
        with Session(engine) as session:
            return [
                b.message_id for b in session.exec(select(Broadcast).order_by(col(Broadcast.id)))
            ]

    # Store A's lane passes wine crops off as tomatoes, in three invented transactions.
    for n in range(3):
        learned("A", n + 1, wine + rng.normal(scale=0.1, size=128))
    assert sent() == [], "held: one store's word"
    # Store B learns real tomatoes: nothing like A's entries, so neither goes out.
    learned("B", 1, tomato)
    assert sent() == []
    # B learns a tomato that does look like A's (the same product after all): both go.
    learned("B", 2, wine + rng.normal(scale=0.1, size=128))
    with Session(engine) as session:
        released = {
            (e.store_id, e.store_entry_id): e.released_by
            for e in session.exec(select(ChainGalleryEntry))
            if e.released_at is not None
        }
        waiting = [(e.store_id, e.store_entry_id) for e in held_entries(session)]
    assert released == {
        ("A", 1): "store:B",
        ("A", 2): "store:B",
        ("A", 3): "store:B",
        ("B", 2): "store:A",
    }
    assert waiting == [("B", 1)]
    assert len(sent()) == 4

    # A person at HQ sends B's first one out; it cannot go twice, nor can a withdrawal row.
    with Session(engine) as session:
        held = held_entries(session)[0]
        confirm(session, intake.outbox, held.id or 0, "ines")
        session.commit()
        with pytest.raises(GalleryReleaseError):
            confirm(session, intake.outbox, held.id or 0, "ines")
        audit = session.exec(
            select(AuditEntry).where(AuditEntry.action == "chain_gallery.confirmed")
        ).all()
    assert len(sent()) == 5 and [a.username for a in audit] == ["ines"]

    # Every store holds the released vectors: store A shapes a wine vector to sit just alike
    # enough to B's released tomato (cosine 0.6). Only held entries can agree, so it waits.
    with Session(engine) as session:
        released_b = next(
            e
            for e in session.exec(select(ChainGalleryEntry))
            if (e.store_id, e.store_entry_id) == ("B", 1)
        )
    b = np.frombuffer(base64.b64decode(released_b.vector_b64), dtype="<f4").astype(float)
    other = rng.normal(size=128)
    other -= other.dot(b) * b
    shaped = 0.6 * b + 0.8 * other / np.linalg.norm(other)
    learned("A", 9, shaped)
    assert len(sent()) == 5, "alike a released vector is not agreement"
    # A vector of another size (another embedder's, or a forged one) agrees with nothing and
    # does not stop the others from agreeing.
    body = GalleryUp(
        entry_id=10,
        code=TOMATO,
        vector=_unit(rng.normal(size=16)),
        embedder_sha256="e" * 64,
        transaction_id="A-tx-10",
        lane_id="lane-A",
    )
    intake.handle(store_subject("A", "gallery"), seal("A", "A:gallery:10", body, keys["A"]))
    learned("B", 3, shaped + rng.normal(scale=0.01, size=128))  # B's own, alike A's shaped one
    with Session(engine) as session:
        state = {
            (e.store_id, e.store_entry_id): e.released_by
            for e in session.exec(select(ChainGalleryEntry))
        }
    assert state[("A", 10)] is None
    assert state[("A", 9)] == "store:B" and state[("B", 3)] == "store:A"
    engine.dispose()


def test_hq_it_confirms_or_withdraws_from_the_command_line(
    database_url: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from hq_server.cli import hq

    engine = make_engine(database_url)
    migrate(engine)
    with Session(engine) as session:
        entry = ChainGalleryEntry(
            store_id="A",
            store_entry_id=1,
            code=TOMATO,
            vector_b64=_unit(np.ones(16)),
            embedder_sha256="e" * 64,
            transaction_id="t1",
            lane_id="lane-A",
        )
        session.add(entry)
        session.commit()
        entry_id = entry.id
    env = {"LANEGUARD_HQ_DATA_DIR": str(tmp_path / "hq")}
    runner = CliRunner()
    confirmed = runner.invoke(
        hq, ["confirm-entry", str(entry_id), "--by", "ines", "--db", database_url], env=env
    )
    assert confirmed.exit_code == 0 and "goes to every store" in confirmed.output
    again = runner.invoke(
        hq, ["confirm-entry", str(entry_id), "--by", "ines", "--db", database_url], env=env
    )
    assert again.exit_code == 1 and f"no held gallery entry {entry_id}" in again.output
    withdrawn = runner.invoke(
        hq, ["withdraw-entry", str(entry_id), "--by", "ines", "--db", database_url], env=env
    )
    assert withdrawn.exit_code == 0 and "withdrawn in every store" in withdrawn.output
    with Session(engine) as session:
        assert len(session.exec(select(Broadcast)).all()) == 2  # the entry, its withdrawal
    engine.dispose()
