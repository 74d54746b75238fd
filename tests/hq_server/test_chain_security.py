"""Attacks on the chain link, each as a test: a store speaking for another store, a forged
or altered message, a replayed or expired enrolment token, release files without a store's
credential, HQ messages signed by someone else, oversized envelopes. HQ's tables run on
SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hq_server.app import create_app as create_hq
from hq_server.db import migrate
from hq_server.intake import Intake
from hq_server.models import ChainGalleryEntry, PooledSample, StoreToken
from hq_server.settings import HqSettings
from hq_server.stores import StoreEnrolmentError, add_store, enrol_store, retire_store
from laneguard.chain import (
    MAX_ENVELOPE_BYTES,
    ChainMessageError,
    GalleryDown,
    GalleryUp,
    SampleUp,
    seal,
    store_subject,
)
from laneguard.signing import public_pem
from product_db.db import make_engine
from product_db.models import utcnow
from store_server.chain_apply import ChainApplier
from store_server.db import migrate as migrate_store
from store_server.models import AuditEntry, ChainInbox, GalleryEntry
from tests.helpers.chain import NatsServer, hq_with_stores
from tests.helpers.live_server import free_port, serve
from tests.helpers.messages import jpeg


def _unit_vector(seed: int) -> str:
    vector = np.random.default_rng(seed).normal(size=64).astype("<f4")
    return base64.b64encode((vector / np.linalg.norm(vector)).astype("<f4").tobytes()).decode()


def _sample(n: int) -> SampleUp:
    return SampleUp(
        sample_id=n,
        lane_id="lane-1",
        transaction_id=f"t{n}",
        track_id=1,
        code="4011",
        band="trusted",
        score=0.9,
        reason="honest",
        review="pending",
        captured_at=utcnow(),
        image_b64=base64.b64encode(jpeg(n)).decode(),
    )


@pytest.fixture
def hq(database_url: str, tmp_path: Path) -> tuple[Engine, Intake, dict[str, Ed25519PrivateKey]]:
    return hq_with_stores(database_url, tmp_path / "media")


def _pooled(engine: Engine) -> list[PooledSample]:
    with Session(engine) as session:
        return list(session.exec(select(PooledSample)))


def test_a_store_cannot_speak_for_another_store(
    hq: tuple[Engine, Intake, dict[str, Ed25519PrivateKey]],
) -> None:
    engine, intake, keys = hq
    subject_a = store_subject("A", "sample")
    # B's key, claiming to be A, on A's subject.
    with pytest.raises(ChainMessageError, match="signed by key"):
        intake.handle(subject_a, seal("A", "A:sample:1", _sample(1), keys["B"]))
    # B's own envelope, on A's subject.
    with pytest.raises(ChainMessageError, match="on 'A'"):
        intake.handle(subject_a, seal("B", "B:sample:1", _sample(1), keys["B"]))
    # A's envelope whose id names B.
    with pytest.raises(ChainMessageError, match="does not match"):
        intake.handle(subject_a, seal("A", "B:sample:1", _sample(1), keys["A"]))
    # A message altered on the way (the broker, or a store on it).
    good = seal("A", "A:sample:2", _sample(2), keys["A"])
    with pytest.raises(ChainMessageError, match="tampered"):
        intake.handle(subject_a, good.replace(b'"lane-1"', b'"lane-9"'))
    # A retired store's messages stop counting, with its own key.
    with Session(engine) as session:
        retire_store(session, "B", "test")
        session.commit()
    with pytest.raises(ChainMessageError, match="not enrolled"):
        intake.handle(store_subject("B", "sample"), seal("B", "B:sample:3", _sample(3), keys["B"]))
    assert _pooled(engine) == []
    intake.handle(subject_a, good)
    intake.handle(subject_a, good)  # redelivered: stored once
    assert [(s.store_id, s.sample_id) for s in _pooled(engine)] == [("A", 2)]


def test_bad_content_is_refused_with_a_reason(
    hq: tuple[Engine, Intake, dict[str, Ed25519PrivateKey]],
) -> None:
    engine, intake, keys = hq
    with pytest.raises(ChainMessageError, match="not JSON"):
        intake.handle(store_subject("A", "sample"), b"\xff not json")
    with pytest.raises(ChainMessageError, match="over"):
        intake.handle(store_subject("A", "sample"), b" " * (MAX_ENVELOPE_BYTES + 1))
    not_jpeg = _sample(4).model_copy(update={"image_b64": base64.b64encode(b"GIF89a").decode()})
    with pytest.raises(ChainMessageError, match="JPEG"):
        intake.handle(store_subject("A", "sample"), seal("A", "A:s:4", not_jpeg, keys["A"]))
    bad_vector = GalleryUp(
        entry_id=1,
        code="4011",
        vector=base64.b64encode(np.ones(64, "<f4").tobytes()).decode(),
        embedder_sha256="e" * 64,
        transaction_id="t",
        lane_id="lane-1",
    )
    with pytest.raises(ChainMessageError, match="unit length"):
        intake.handle(store_subject("A", "gallery"), seal("A", "A:g:1", bad_vector, keys["A"]))
    with pytest.raises(ChainMessageError, match="subject"):
        intake.handle("lg.store.A.b.c", seal("A", "A:s:5", _sample(5), keys["A"]))
    with Session(engine) as session:
        assert list(session.exec(select(ChainGalleryEntry))) == []
    assert _pooled(engine) == []


def test_enrolment_tokens_are_one_time_and_expire(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    key = public_pem(Ed25519PrivateKey.generate())
    with Session(engine) as session:
        token = add_store(session, "S9", "S9", "test")
        expired = add_store(session, "S8", "S8", "test", hours=1)
        session.commit()
    with Session(engine) as session:
        enrol_store(session, token, "S9", key)
        session.commit()
        with pytest.raises(StoreEnrolmentError, match="already used"):
            enrol_store(session, token, "S9", key)
        row = session.exec(select(StoreToken).where(StoreToken.store_id == "S8")).one()
        row.expires_at = utcnow().replace(year=2000)
        session.add(row)
        session.commit()
        with pytest.raises(StoreEnrolmentError, match="expired"):
            enrol_store(session, expired, "S8", key)
        with pytest.raises(StoreEnrolmentError, match="not recognised"):
            enrol_store(session, "guessed-token-value", "S8", key)
        with pytest.raises(StoreEnrolmentError, match="store id"):
            add_store(session, "a.b>", "x", "test")
        with pytest.raises(StoreEnrolmentError, match="already enrolled"):
            add_store(session, "S9", "again", "test")


def test_release_files_need_a_stores_credential_and_enrolment_needs_a_token(
    tmp_path: Path,
) -> None:
    nats = NatsServer(tmp_path / "nats").start()
    settings = HqSettings(
        database_url=f"sqlite:///{tmp_path / 'hq.sqlite3'}",
        data_dir=tmp_path / "hq",
        nats_url=nats.url,
    )
    try:
        with serve(create_hq(settings)) as base:
            file_url = f"{base}/api/v1/hq/bundles/{'a' * 64}"
            assert httpx.get(file_url).status_code == 401
            wrong = httpx.get(file_url, headers={"Authorization": "Bearer not-a-credential"})
            assert wrong.status_code == 401
            refused = httpx.post(
                f"{base}/api/v1/hq/enrol",
                json={"token": "x" * 20, "public_key": public_pem(Ed25519PrivateKey.generate())},
            )
            assert refused.status_code == 403 and "not recognised" in refused.json()["detail"]
            engine = make_engine(settings.database_url)
            with Session(engine) as session:
                token = add_store(session, "S1", "S1", "test")
                session.commit()
            not_a_key = httpx.post(
                f"{base}/api/v1/hq/enrol", json={"token": token, "public_key": "hello"}
            )
            assert not_a_key.status_code == 403
            enrolled = httpx.post(
                f"{base}/api/v1/hq/enrol",
                json={"token": token, "public_key": public_pem(Ed25519PrivateKey.generate())},
            ).json()
            headers = {"Authorization": f"Bearer {enrolled['credential']}"}
            assert httpx.get(file_url, headers=headers).status_code == 404  # known store
            pages = [httpx.get(f"{base}{p}") for p in ("/stores", "/loss", "/releases")]
            assert all(p.status_code == 303 and "/login" in p.headers["location"] for p in pages)
            key = public_pem(Ed25519PrivateKey.generate())
            for n in range(3):  # five refused from this address in all
                guess = {"token": f"guess-{n:02d}" * 4, "public_key": key}
                assert httpx.post(f"{base}/api/v1/hq/enrol", json=guess).status_code == 403
            held = httpx.post(
                f"{base}/api/v1/hq/enrol", json={"token": "y" * 24, "public_key": key}
            )
            assert held.status_code == 429 and int(held.headers["Retry-After"]) >= 1
            with Session(engine) as session:
                refused_rows = [
                    row
                    for row in session.exec(select(AuditEntry))
                    if row.action == "enrolment.refused"
                ]
            assert len(refused_rows) == 5 and {r.client for r in refused_rows} == {"127.0.0.1"}
            engine.dispose()
    finally:
        nats.stop()


def test_a_store_applies_only_messages_signed_by_its_hq(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.sqlite3'}")
    migrate_store(engine)
    hq_key, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()

    def no_fetch(_sha: str, _size: int, _target: Path) -> None:
        raise AssertionError("no release in this test")

    applier = ChainApplier(
        engine, tmp_path, "B", hq_key.public_key(), tmp_path / "hq.pub", no_fetch
    )
    entry = GalleryDown(
        hq_entry_id=7,
        code="4011",
        vector=_unit_vector(1),
        embedder_sha256="e" * 64,
        origin_store="A",
    )
    with pytest.raises(ChainMessageError):
        applier.handle("lg.hq.all.gallery", seal("hq", "hq:gallery:7", entry, stranger))
    with pytest.raises(ChainMessageError, match="not HQ"):
        applier.handle("lg.hq.all.gallery", seal("A", "hq:gallery:7", entry, hq_key))
    with pytest.raises(ChainMessageError, match=re.escape("not 'lg.hq.all.gallery'")):
        applier.handle("lg.hq.store.B.gallery", seal("hq", "hq:gallery:7", entry, hq_key))
    with Session(engine) as session:
        assert list(session.exec(select(GalleryEntry))) == []
    applier.handle("lg.hq.all.gallery", seal("hq", "hq:gallery:7", entry, hq_key))
    applier.handle("lg.hq.all.gallery", seal("hq", "hq:gallery:7", entry, hq_key))  # again
    own = entry.model_copy(update={"hq_entry_id": 8, "origin_store": "B"})
    applier.handle("lg.hq.all.gallery", seal("hq", "hq:gallery:8", own, hq_key))  # B's own
    with Session(engine) as session:
        rows = list(session.exec(select(GalleryEntry)))
        inbox = list(session.exec(select(ChainInbox)))
    assert [(r.hq_entry_id, r.origin_store, r.code) for r in rows] == [(7, "A", "4011")]
    assert len(inbox) == 2
    back = GalleryDown(
        hq_entry_id=9,
        code="4011",
        vector="",
        embedder_sha256="e" * 64,
        origin_store="A",
        withdraws=7,
    )
    applier.handle("lg.hq.all.gallery", seal("hq", "hq:gallery:9", back, hq_key))
    with Session(engine) as session:
        first = session.exec(select(GalleryEntry).where(GalleryEntry.hq_entry_id == 7)).one()
        assert first.withdrawn
    engine.dispose()


def test_hq_never_hands_its_own_broker_credential_to_a_store(tmp_path: Path) -> None:
    """HQ's nats_url carries HQ's own user and password; an enrolling store is told the
    broker's address without them (or the store_nats_url IT set)."""
    port = free_port()  # no broker: HQ's link keeps retrying in the background
    settings = HqSettings(
        database_url=f"sqlite:///{tmp_path / 'hq.sqlite3'}",
        data_dir=tmp_path / "hq",
        nats_url=f"nats://hq:hq-broker-secret@127.0.0.1:{port}",
    )
    with serve(create_hq(settings)) as base:
        engine = make_engine(settings.database_url)
        with Session(engine) as session:
            token = add_store(session, "S1", "S1", "test")
            session.commit()
        engine.dispose()
        reply = httpx.post(
            f"{base}/api/v1/hq/enrol",
            json={"token": token, "public_key": public_pem(Ed25519PrivateKey.generate())},
        )
    assert reply.status_code == 200, reply.text
    assert reply.json()["nats_url"] == f"nats://127.0.0.1:{port}"
    assert "hq-broker-secret" not in reply.text


def test_a_store_reaches_hq_over_https_it_can_check(tmp_path: Path) -> None:
    """HQ served with IT's certificate (here one the chain's own CA would have issued, made
    by the product's own maker): a store that trusts that CA enrols; one that does not is
    refused by the certificate before its token goes anywhere; an http:// HQ on another
    computer is refused before any connection."""
    from laneguard.serving import serve_in_thread
    from laneguard.tls import make_self_signed
    from store_server.chain_link import HqEnrolment, HqEnrolmentError, enrol_with_hq
    from store_server.settings import StoreSettings

    certificate, key = tmp_path / "hq.crt", tmp_path / "hq.key"
    make_self_signed(certificate, key, ["127.0.0.1"])
    settings = HqSettings(
        database_url=f"sqlite:///{tmp_path / 'hq.sqlite3'}",
        data_dir=tmp_path / "hq",
        nats_url="nats://127.0.0.1:9",  # no broker: enrolment is HTTP
        tls_cert=certificate,
        tls_key=key,
    )
    engine = make_engine(settings.database_url)
    migrate(engine)
    with Session(engine) as session:
        first, second = (add_store(session, s, s, "test") for s in ("S1", "S2"))
        session.commit()
    engine.dispose()

    def store(name: str, **more: object) -> StoreSettings:
        return StoreSettings(
            database_url=f"sqlite:///{tmp_path / name / 'store.sqlite3'}",
            data_dir=tmp_path / name,
            discovery_port=0,
            **more,
        )

    with serve_in_thread(create_hq(settings), tls=(certificate, key)) as hq_url:
        assert hq_url.startswith("https://")
        untrusting = store("S1")
        with pytest.raises(HqEnrolmentError, match="could not be reached"):
            enrol_with_hq(untrusting, hq_url, first)
        assert HqEnrolment.load(untrusting.data_dir) is None
        trusting = store("S1b", hq_ca_file=certificate)
        enrolment = enrol_with_hq(trusting, hq_url, first)
        assert enrolment.store_id == "S1" and enrolment.hq_url == hq_url
    with pytest.raises(HqEnrolmentError, match="must be https"):
        enrol_with_hq(store("S2"), "http://192.0.2.5:8200", second)
