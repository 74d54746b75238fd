"""HQ and the chain's broker: the broker's configuration (HQ's operator and account keys, no
anonymous clients, TLS), and what HQ keeps on it beyond the streams: each enrolled store's two
durable consumers, which the store may read from but not create (its credential does not
allow it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hq_server.models import Store
from hq_server.settings import HqSettings
from laneguard.chain import HQ_STREAM
from laneguard.files import private_dir, write_bytes_atomic
from laneguard.jetstream import ensure_consumer
from laneguard.nats_auth import BrokerKeys, store_consumers
from laneguard.tls import ensure_certificate, server_hosts


def enrolled_store_ids(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.exec(select(Store.store_id).where(Store.active == True)))  # noqa: E712


def store_consumers_keeper(engine: Engine) -> Callable[[Any], Awaitable[None]]:
    """The JetStream link's ``maintain`` step for HQ: every enrolled store has its consumers
    (checked each time, so a broker that lost its storage gets them back)."""

    async def maintain(js: Any) -> None:
        for store_id in await asyncio.to_thread(enrolled_store_ids, engine):
            for durable, subject in store_consumers(store_id):
                await ensure_consumer(js, HQ_STREAM, durable, subject)

    return maintain


@dataclass(frozen=True)
class BrokerFiles:
    """What `laneguard hq broker-config` wrote: the server's configuration and, with TLS, its
    certificate (the CA HQ and stores check the broker against)."""

    config: Path
    certificate: Path | None

    def url(self, host: str, port: int) -> str:
        return f"{'tls' if self.certificate else 'nats'}://{host}:{port}"


def write_broker_config(
    settings: HqSettings, folder: Path, host: str, port: int, tls: bool = True
) -> BrokerFiles:
    """A ``nats-server -c`` configuration for the chain in ``folder`` (0700): JetStream stored
    in ``folder/jetstream``, only the users HQ's account key signed, and TLS with a
    certificate made once for ``host`` (kept on later runs: stores were given it)."""
    folder = private_dir(folder)
    broker = BrokerKeys.load_or_make(settings.data_dir / "keys")
    certificate = None
    files: tuple[Path, Path] | None = None
    if tls:
        files = (folder / "broker.crt", folder / "broker.key")
        ensure_certificate(*files, server_hosts(host))
        certificate = files[0]
    config = folder / "nats-server.conf"
    text = broker.server_config(port, folder / "jetstream", host, files)
    write_bytes_atomic(config, text.encode(), mode=0o600)
    return BrokerFiles(config, certificate)
