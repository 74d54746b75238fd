"""HQ and the chain's broker: the broker's configuration (HQ's operator and account keys, no
anonymous clients, TLS), and what HQ keeps on it beyond the streams: each enrolled store's
account and its two durable consumers, which the store may read from but not create."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
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

log = logging.getLogger("laneguard.hq.broker")


def stores_by_state(engine: Engine) -> tuple[list[str], list[str]]:
    """(enrolled store ids, retired ones that had enrolled)."""
    with Session(engine) as session:
        rows = session.exec(select(Store.store_id, Store.active, Store.enrolled_at)).all()
    active = [store_id for store_id, is_active, _ in rows if is_active]
    retired = [store_id for store_id, is_active, at in rows if not is_active and at is not None]
    return active, retired


class BrokerKeeper:
    """HQ's link's ``maintain`` step: every enrolled store has its account on the broker
    (pushed through the system account) and its two consumers on HQ's stream, and a retired
    store's account revokes every user it had. A full pass on each new connection (a broker
    that lost its storage gets everything back), then only what changed; a store that fails
    is logged and tried again next time, without holding up the others."""

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
        self._done: set[tuple[str, bool]] = set()

    async def __call__(self, js: Any) -> None:
        if js is not self._connection:
            await self._refuse_open_broker()
            self._connection, self._done = js, set()
        active, retired = await asyncio.to_thread(stores_by_state, self.engine)
        wanted = [(s, False) for s in active] + [(s, True) for s in retired]
        todo = [item for item in wanted if item not in self._done]
        if not todo:
            return
        system = await self._system_connection(js)
        try:
            for store_id, revoked in todo:
                try:
                    await self._keep(js, system, store_id, revoked)
                except Exception as error:  # one store's trouble must not stop the rest
                    log.warning("broker: store %s not set up yet: %s", store_id, error)
                    continue
                self._done.add((store_id, revoked))
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

    async def _system_connection(self, js: Any) -> Any:
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

    async def _keep(self, js: Any, system: Any, store_id: str, revoked: bool) -> None:
        account = self.keys.store_account_jwt(store_id, revoked=revoked)
        reply = await system.request("$SYS.REQ.CLAIMS.UPDATE", account.encode(), timeout=5)
        answer = json.loads(reply.data)
        if answer.get("error") or (answer.get("data") or {}).get("code") != 200:
            raise BrokerAuthError(f"the broker refused store {store_id}'s account: {answer}")
        if revoked:
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
