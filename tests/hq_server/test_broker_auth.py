"""The chain's broker as a chain runs it (issue #32): `laneguard hq broker-config`'s
nats-server (accounts, a credential per store that HQ signed at enrolment, TLS), HQ and three
stores. Played as an attacker on the chain's network would: an anonymous client, a client
without TLS, a store's own credential used beyond its store, a store's credential without its
key; and HQ owning the streams and every store's consumers."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import nats
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js.api import StreamConfig

from hq_server.cli import hq
from laneguard.chain import HQ_STREAM, STORES_STREAM
from laneguard.jetstream import broker_tls
from laneguard.nats_auth import (
    STORE_JS_API,
    USER,
    BrokerKeys,
    BrokerUser,
    jwt_claims,
    public_key_of_nkey,
    store_inbox,
    user_nkey,
)
from laneguard.signing import load_private_key
from tests.helpers.chain import wait_for
from tests.hq_server.conftest import Chain

pytestmark = pytest.mark.timeout(240)


def _store_user(chain: Chain, store_id: str) -> BrokerUser:
    """Store ``store_id``'s broker credential, as its server keeps it after enrolment."""
    folder = chain.root / store_id / "data" / "hq"
    enrolment = json.loads((folder / "enrolment.json").read_text())
    key = load_private_key(folder / "nats-user.key")
    return BrokerUser(enrolment["nats_jwt"], key, store_inbox(store_id))


def _tls(chain: Chain) -> ssl.SSLContext:
    context = broker_tls(chain.broker.url, chain.broker.ca_file)
    assert context is not None
    return context


async def _connect(chain: Chain, user: BrokerUser | None, errors: list[str]) -> Any:
    async def collect(error: Exception) -> None:
        errors.append(str(error))

    options = user.connect_options() if user else {}
    return await nats.connect(
        chain.broker.url,
        tls=_tls(chain),
        connect_timeout=3,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=collect,
        **options,
    )


def test_no_credential_no_tls_or_a_credential_without_its_key_is_refused(chain: Chain) -> None:
    async def attempts() -> tuple[str, str]:
        with pytest.raises(Exception) as anonymous:
            await _connect(chain, None, [])
        stolen = _store_user(chain, "A")  # the JWT copied off store A, signed with another key
        thief = BrokerUser(stolen.jwt, Ed25519PrivateKey.generate(), stolen.inbox_prefix)
        with pytest.raises(Exception) as with_stolen:
            await _connect(chain, thief, [])
        return str(anonymous.value), str(with_stolen.value)

    anonymous, stolen = asyncio.run(attempts())
    assert "Authorization Violation" in anonymous
    assert "Authorization Violation" in stolen
    # Store A's own credential in the clear, as a client that skips TLS would send it.
    user = _store_user(chain, "A")
    with socket.create_connection(("127.0.0.1", chain.broker.port), timeout=5) as raw:
        info = json.loads(raw.recv(65536).decode().split(" ", 1)[1])
        assert info["tls_required"] is True
        connect = {"jwt": user.jwt, "sig": "x", "verbose": True, "protocol": 1}
        try:
            raw.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
            answer = raw.recv(4096).decode(errors="replace")
        except ConnectionResetError:  # the broker hung up on the clear text
            answer = ""
    assert "PONG" not in answer and "+OK" not in answer, answer


def test_a_store_credential_reaches_its_own_subjects_and_consumers_only(chain: Chain) -> None:
    async def probe() -> dict[str, Any]:
        hq_keys = BrokerKeys.load_or_make(chain.root / "hq" / "keys")
        hq_user = hq_keys.hq_user(load_private_key(chain.root / "hq" / "keys" / "nats-hq-user.key"))
        hq_nc = await _connect(chain, hq_user, [])
        hq_js = hq_nc.jetstream(timeout=3)
        before = {
            s: (await hq_js.stream_info(s)).state.messages for s in (HQ_STREAM, STORES_STREAM)
        }
        consumers = []
        for store in "ABC":  # HQ makes them when a store enrols
            for kind in ("all", "own"):
                consumers.append(await _made_by_hq(hq_js, f"store-{store}-{kind}"))

        errors: list[str] = []
        nc = await _connect(chain, _store_user(chain, "A"), errors)
        own = nc.jetstream(timeout=1.5, prefix=STORE_JS_API)  # as the store's link reaches HQ
        ack = await own.publish("lg.store.A.probe", b"{}", headers={"Nats-Msg-Id": "probe-1"})
        assert ack.stream == STORES_STREAM, "its own subject is open to it"
        js = nc.jetstream(timeout=1.5)  # the broker's own JetStream API
        taken = 0
        sub = await nc.subscribe("lg.>")  # everyone's traffic
        for attack in (
            own.publish("lg.store.B.sample", b"{}"),  # speaking for store B
            js.purge_stream(HQ_STREAM),
            js.delete_stream(STORES_STREAM),
            js.add_stream(StreamConfig(name="EVIL", subjects=["evil.>"])),
            js.stream_info(STORES_STREAM),
            js.add_consumer(STORES_STREAM, durable_name="peek"),
            own.consumer_info(HQ_STREAM, "store-B-own"),
            nc.request(
                f"{STORE_JS_API}.CONSUMER.MSG.NEXT.{HQ_STREAM}.store-B-own", b"1", timeout=1.5
            ),
        ):
            try:
                await attack
                taken += 1
            except Exception:
                continue
        # JetStream answers whatever reply subject a request names (the review's attack): an
        # acknowledgement, a publish and a fetch of its own, each naming another stream's
        # purge or delete, or another store's subject, as where the answer should go.
        await nc.publish(
            f"$JS.ACK.{HQ_STREAM}.store-A-all.1.1.1.0.0",
            b"",
            reply=f"$JS.API.STREAM.PURGE.{STORES_STREAM}",
        )
        await nc.publish("lg.store.A.x", b"{}", reply=f"$JS.API.STREAM.PURGE.{STORES_STREAM}")
        for reply in (f"$JS.API.STREAM.DELETE.{HQ_STREAM}", "lg.store.B.replayed"):
            await nc.publish(
                f"{STORE_JS_API}.CONSUMER.MSG.NEXT.{HQ_STREAM}.store-A-all",
                b'{"batch": 5}',
                reply=reply,
            )
        await nc.flush()
        await hq_js.publish("lg.hq.store.B.probe", b"{}", headers={"Nats-Msg-Id": "to-b"})
        await asyncio.sleep(1.0)
        seen = sub.pending_msgs
        await nc.close()
        after = {s: (await hq_js.stream_info(s)).state.messages for s in (HQ_STREAM, STORES_STREAM)}
        replayed = await hq_js.stream_info(STORES_STREAM, subjects_filter="lg.store.B.replayed")
        replayed_count = sum((replayed.state.subjects or {}).values())
        await hq_nc.close()
        return {"errors": errors, "before": before, "after": after, "taken": taken,
                "seen": seen, "consumers": consumers, "replayed": replayed_count}  # fmt: skip

    found = asyncio.run(probe())
    assert found["seen"] == 0, "it read other stores' traffic"
    assert found["taken"] == 0, f"{found['taken']} of the attacks went through"
    assert any("permissions violation" in e.lower() for e in found["errors"]), found["errors"]
    before, after = found["before"], found["after"]
    # Nothing purged or deleted (the stores' status messages keep coming meanwhile), and
    # nothing of HQ's landed on store B's subjects.
    assert after[STORES_STREAM] > before[STORES_STREAM] and after[HQ_STREAM] > before[HQ_STREAM]
    assert found["replayed"] == 0
    consumers = found["consumers"]
    # HQ made every store's two consumers (no store could have), each filtered as it should.
    assert consumers == [
        subject for store in "ABC" for subject in ("lg.hq.all.>", f"lg.hq.store.{store}.>")
    ]


async def _made_by_hq(js: Any, durable: str) -> str:
    """The filter subject of the consumer HQ made, once it has (within 30 s)."""
    from nats.js.errors import NotFoundError

    for _ in range(300):
        try:
            return str((await js.consumer_info(HQ_STREAM, durable)).config.filter_subject)
        except NotFoundError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"HQ never made {durable}")


def test_hq_signs_each_store_a_credential_for_its_own_key_and_subjects(chain: Chain) -> None:
    user = _store_user(chain, "B")
    claims = jwt_claims(user.jwt)
    assert claims["sub"] == user_nkey(user.key)
    public_key_of_nkey(claims["sub"], USER)
    allowed = claims["nats"]["pub"]["allow"]
    assert "lg.store.B.>" in allowed and not any(".A." in s or "-A-" in s for s in allowed)
    hq_keys = BrokerKeys.load_or_make(chain.root / "hq" / "keys")
    assert claims["iss"] == hq_keys.store_account_nkey("B") != hq_keys.store_account_nkey("A")
    assert claims["nats"]["sub"]["allow"] == [f"{store_inbox('B')}.>"]
    own = (chain.root / "B" / "data" / "hq" / "nats-user.key").stat().st_mode
    assert own & 0o077 == 0
    assert (chain.root / "hq" / "keys" / "nats-account.key").stat().st_mode & 0o077 == 0


def test_hq_writes_the_broker_configuration(tmp_path: Path) -> None:
    config = tmp_path / "hq.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "hq")}))
    result = CliRunner().invoke(
        hq, ["broker-config", "--config", str(config), "--out", str(tmp_path / "broker"),
             "--port", "4333", "--host", "0.0.0.0", "--name", "nats.chain.example",
             "--name", "192.0.2.7"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "nats_url: tls://nats.chain.example:4333" in result.output
    from cryptography import x509

    made = x509.load_pem_x509_certificate((tmp_path / "broker" / "broker.crt").read_bytes())
    names = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "nats.chain.example" in names.get_values_for_type(x509.DNSName)
    assert "192.0.2.7" in [str(a) for a in names.get_values_for_type(x509.IPAddress)]
    text = (tmp_path / "broker" / "nats-server.conf").read_text()
    assert "resolver: {type: full" in text and "tls:" in text and "port: 4333" in text
    assert (tmp_path / "broker" / "broker.key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "broker" / "nats-server.conf").stat().st_mode & 0o077 == 0


def test_a_store_renews_its_day_long_credential_and_a_retired_store_cannot(chain: Chain) -> None:
    from sqlmodel import Session

    from hq_server.stores import retire_store
    from product_db.db import make_engine
    from store_server.chain_link import BrokerCredential, HqEnrolment
    from store_server.settings import StoreSettings

    settings = StoreSettings(data_dir=chain.root / "B" / "data")
    enrolment = HqEnrolment.load(settings.data_dir)
    assert enrolment is not None and enrolment.nats_jwt is not None
    first = jwt_claims(enrolment.nats_jwt)
    assert first["exp"] - first["iat"] == 24 * 3600
    credential = BrokerCredential(settings, enrolment)
    assert not credential.renew_if_due(), "most of its day is left"
    assert credential.renew_if_due(now=time.time() + 13 * 3600)
    kept = HqEnrolment.load(settings.data_dir)
    assert kept is not None and kept.nats_jwt == credential.jwt()
    assert jwt_claims(credential.jwt())["iat"] >= first["iat"]
    assert jwt_claims(credential.jwt())["sub"] == first["sub"]

    engine = make_engine(chain.hq_database_url)
    with Session(engine) as session:
        retire_store(session, "B", "it")
        session.commit()
    engine.dispose()
    assert not credential.renew_if_due(now=time.time() + 13 * 3600), "retired: refused"
    # ... and its credential, still within its day, is cut off at once: HQ revokes every user
    # of the retired store's account on the broker.
    chain.hq_app.state.link.maintain_now()

    async def connect_and_leave() -> None:
        connection = await _connect(chain, credential.user(), [])
        await connection.close()

    def refused() -> bool:
        try:
            asyncio.run(connect_and_leave())
        except Exception as error:
            return "Authorization" in str(error)
        return False

    wait_for(refused, 20, "the retired store's credential to be refused")

    # The broker itself holds a credential to its day: one that ran out is refused.
    hq_keys = BrokerKeys.load_or_make(chain.root / "hq" / "keys")
    key = Ed25519PrivateKey.generate()
    brief = hq_keys.store_user("C", user_nkey(key), lifetime_s=1)
    time.sleep(2.1)
    with pytest.raises(Exception) as expired:
        asyncio.run(_connect(chain, BrokerUser(brief, key, store_inbox("C")), []))
    assert "Authorization" in str(expired.value) or "Expired" in str(expired.value)


def test_a_store_enrolled_before_broker_credentials_gets_one(chain: Chain) -> None:
    """A store that enrolled with an HQ from before accounts per store has no broker
    credential: it asks HQ for one with its HQ credential before it connects."""
    import dataclasses

    from store_server.chain_link import BrokerCredential, HqEnrolment
    from store_server.settings import StoreSettings

    settings = StoreSettings(data_dir=chain.root / "C" / "data")
    enrolment = HqEnrolment.load(settings.data_dir)
    assert enrolment is not None
    older = dataclasses.replace(enrolment, nats_jwt=None)
    credential = BrokerCredential(settings, older)
    assert credential.jwt() == ""
    assert credential.renew_if_due()
    kept = HqEnrolment.load(settings.data_dir)
    assert kept is not None and kept.nats_jwt == credential.jwt()
    assert jwt_claims(credential.jwt())["iss"] == BrokerKeys.load_or_make(
        chain.root / "hq" / "keys"
    ).store_account_nkey("C")
