"""HQ and the chain's broker: the broker's configuration (HQ's operator and account keys, no
anonymous clients, TLS), and what HQ keeps on it beyond the streams: each enrolled store's
account and its two durable consumers, which the store may read from but not create."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hq_server.models import Store
from hq_server.settings import HqSettings
from laneguard.chain import HQ_STREAM
from laneguard.files import private_dir, write_bytes_atomic
from laneguard.jetstream import ensure_consumer
from laneguard.nats_auth import BrokerAuthError, BrokerKeys, store_consumers
from laneguard.tls import ensure_certificate, server_hosts
from product_db.models import as_utc

log = logging.getLogger("laneguard.hq.broker")
FULL_PASS_S = 300.0  # every store's account and consumers checked again at least this often


def stores_by_state(engine: Engine) -> dict[str, tuple[bool, int]]:
    """Every store that has enrolled: (retired, seconds since 1970 of its latest enrolment)."""
    with Session(engine) as session:
        rows = session.exec(select(Store.store_id, Store.active, Store.enrolled_at)).all()
    return {
        store_id: (not active, int(as_utc(enrolled).timestamp()))
        for store_id, active, enrolled in rows
        if enrolled is not None
    }


class BrokerKeeper:
    """HQ's link's ``maintain`` step: every enrolled store has its account on the broker
    (pushed through the system account, refusing users of its earlier enrolments) and its two
    consumers on HQ's stream, and a retired store's account revokes every user it had. A full
    pass every ``FULL_PASS_S`` (a broker that lost its storage gets everything back), and
    between them only what changed; a store that fails is logged and tried again next time,
    without holding up the others."""

    def __init__(
        self,
        engine: Engine,
        keys: BrokerKeys,
        system_key: Ed25519PrivateKey,
        url: str,
        tls: ssl.SSLContext | None,
    ) -> None:
        self.engine, self.keys, self.system_key = engine, keys, system_key
        self.url, self.tls = url, tls
        self._connection: Any = None
        self._pushed: dict[str, tuple[bool, int]] = {}  # store -> the state the broker holds
        self._full_pass_at = -math.inf

    async def __call__(self, js: Any) -> None:
        if js is not self._connection:
            await self._refuse_open_broker()
            self._connection = js
        if time.monotonic() - self._full_pass_at > FULL_PASS_S:
            # Also after the broker restarted under the same connection (nats-py reconnects
            # by itself), which may have lost its accounts and consumers.
            self._pushed, self._full_pass_at = {}, time.monotonic()
        states = await asyncio.to_thread(stores_by_state, self.engine)
        todo = {s: state for s, state in states.items() if self._pushed.get(s) != state}
        if not todo:
            return
        system = await self._system_connection()
        try:
            for store_id, state in todo.items():
                try:
                    await self._keep(js, system, store_id, *state)
                except Exception as error:  # one store's trouble must not stop the rest
                    log.warning("broker: store %s not set up yet: %s", store_id, error)
                    continue
                self._pushed[store_id] = state
        finally:
            await system.close()

    async def _connect(self, **options: Any) -> Any:
        import nats

        return await nats.connect(
            self.url,
            tls=self.tls,
            connect_timeout=2,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            **options,
        )

    async def _system_connection(self) -> Any:
        return await self._connect(**self.keys.system_user(self.system_key).connect_options())

    async def _refuse_open_broker(self) -> None:
        """A broker that lets anonymous clients in would give every store's data to anyone
        on the chain's network (and stores' accounts would be ignored): HQ will not use it."""
        try:
            anonymous = await self._connect()
        except Exception:  # refused: as it should be
            return
        await anonymous.close()
        raise BrokerAuthError(
            f"the broker at {self.url} lets anonymous clients in: run it with the configuration "
            "`laneguard hq broker-config` writes"
        )

    async def _keep(
        self, js: Any, system: Any, store_id: str, retired: bool, enrolled_at: int
    ) -> None:
        """Store ``store_id``'s account as it should be: a retired store's refuses every user
        it had; an enrolled one's refuses the users of its earlier enrolments."""
        from nats.errors import NoRespondersError

        # The broker refuses users issued at or before this second; a store's current user
        # was issued in the second of its enrolment or after.
        revoked_before = int(time.time()) + 1 if retired else enrolled_at - 1
        account = self.keys.store_account_jwt(store_id, revoked_before=revoked_before)
        try:
            reply = await system.request("$SYS.REQ.CLAIMS.UPDATE", account.encode(), timeout=5)
        except NoRespondersError:
            raise BrokerAuthError(
                "the broker takes no account updates (its configuration predates accounts per "
                "store): write it again with `laneguard hq broker-config` and restart it"
            ) from None
        answer = json.loads(reply.data)
        if answer.get("error") or (answer.get("data") or {}).get("code") != 200:
            raise BrokerAuthError(f"the broker refused store {store_id}'s account: {answer}")
        if retired:
            log.info("broker: store %s retired, its credentials revoked", store_id)
            return
        for durable, subject in store_consumers(store_id):
            await ensure_consumer(js, HQ_STREAM, durable, subject)


@dataclass(frozen=True)
class BrokerFiles:
    """What `laneguard hq broker-config` wrote: the server's configuration and, with TLS, its
    certificate (the CA HQ and stores check the broker against)."""

    config: Path
    certificate: Path | None

    def url(self, host: str, port: int) -> str:
        return f"{'tls' if self.certificate else 'nats'}://{host}:{port}"


def write_broker_config(
    settings: HqSettings,
    folder: Path,
    host: str,
    port: int,
    tls: bool = True,
    names: tuple[str, ...] = (),
) -> BrokerFiles:
    """A ``nats-server -c`` configuration for the chain in ``folder`` (0700): JetStream stored
    in ``folder/jetstream``, only the users HQ's account key signed, and TLS with a
    certificate made once for ``host`` and ``names`` (the names and addresses stores reach the
    broker by; kept on later runs: stores were given it)."""
    folder = private_dir(folder)
    broker = BrokerKeys.load_or_make(settings.data_dir / "keys")
    certificate = None
    files: tuple[Path, Path] | None = None
    if tls:
        files = (folder / "broker.crt", folder / "broker.key")
        ensure_certificate(*files, [*names, *server_hosts(host)])
        certificate = files[0]
    config = folder / "nats-server.conf"
    text = broker.server_config(port, folder / "jetstream", host, files)
    write_bytes_atomic(config, text.encode(), mode=0o600)
    return BrokerFiles(config, certificate)
