"""HQ's retention: pooled crops older than pooled_days go (a file another recent sample shares
stays), published outbox rows and receipts older than the streams' retention go, and a store
resending what HQ no longer has receipts for is still stored once. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from hq_server.db import migrate
from hq_server.gallery_release import confirm
from hq_server.intake import Intake
from hq_server.models import Broadcast, ChainGalleryEntry, ChainReceipt, PooledSample
from hq_server.outbox import HqOutbox
from hq_server.retention import purge
from hq_server.stores import add_store, enrol_store, store_keys
from laneguard.chain import GalleryUp, SampleUp, seal, store_subject
from laneguard.signing import public_pem
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.media import MediaStore
from tests.helpers.messages import jpeg


def test_old_crops_and_messages_go_and_resent_ones_are_stored_once(
    database_url: str, tmp_path: Path
) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    key = Ed25519PrivateKey.generate()
    with Session(engine) as session:
        enrol_store(session, add_store(session, "S1", "S1", "test"), "S1", public_pem(key))
        session.commit()
    store_keys.forget("S1")
    media = MediaStore(tmp_path / "media")
    intake = Intake(engine, media, HqOutbox(engine, Ed25519PrivateKey.generate()))
    now = utcnow()

    def sample(n: int, image: bytes, days_ago: float) -> bytes:
        body = SampleUp(
            sample_id=n,
            lane_id="lane-1",
            transaction_id=f"t{n}",
            track_id=1,
            code="4011",
            band="unknown",
            score=0.5,
            reason="honest",
            review="pending",
            captured_at=now - timedelta(days=days_ago),
            image_b64=base64.b64encode(image).decode(),
        )
        return seal("S1", f"S1:sample:{n}", body, key)

    shared, old_only = jpeg(1), jpeg(2)
    for message in (sample(1, old_only, 200), sample(2, shared, 200), sample(3, shared, 10)):
        intake.handle(store_subject("S1", "sample"), message)
    vector = np.random.default_rng(0).normal(size=64).astype("<f4")
    entry = GalleryUp(
        entry_id=5,
        code="4011",
        vector=base64.b64encode((vector / np.linalg.norm(vector)).astype("<f4").tobytes()).decode(),
        embedder_sha256="e" * 64,
        transaction_id="t3",
        lane_id="lane-1",
    )
    gallery = seal("S1", "S1:gallery:5", entry, key)
    intake.handle(store_subject("S1", "gallery"), gallery)
    with Session(engine) as session:  # held for a second store; HQ's IT sends it out
        held = session.exec(select(ChainGalleryEntry)).one()
        confirm(session, intake.outbox, held.id or 0, "it")
        session.commit()
    with Session(engine) as session:
        images = {s.sample_id: s.image for s in session.exec(select(PooledSample))}
        broadcast = session.exec(select(Broadcast)).one()  # the entry, going to every store
        broadcast.published_at = now - timedelta(days=20)
        session.add(broadcast)
        session.add(Broadcast(subject="lg.hq.all.x", message_id="hq:x", kind="x", data=b"{}"))
        for receipt in session.exec(select(ChainReceipt)):
            receipt.received_at = now - timedelta(days=20)
            session.add(receipt)
        session.commit()

    report = purge(engine, media, pooled_days=180, now=now)
    assert (report.samples, report.crops, report.broadcasts, report.receipts) == (2, 1, 1, 4)
    assert not media.path(images[1]).exists() and media.path(images[3]).exists()
    with Session(engine) as session:
        assert [s.sample_id for s in session.exec(select(PooledSample))] == [3]
        assert [b.message_id for b in session.exec(select(Broadcast))] == ["hq:x"]  # unsent
        assert list(session.exec(select(ChainReceipt))) == []

    # The store lost its cursor and sends again: still one of each.
    intake.handle(store_subject("S1", "sample"), sample(3, shared, 10))
    intake.handle(store_subject("S1", "gallery"), gallery)
    with Session(engine) as session:
        assert len(list(session.exec(select(PooledSample)))) == 1
        assert len(list(session.exec(select(ChainGalleryEntry)))) == 1
    engine.dispose()
