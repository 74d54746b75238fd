"""A durable two-way link over NATS JetStream, run in one thread: publish what a source has
pending and tell it once the stream acknowledged it; pull from durable consumers and
acknowledge each message only after its handler has stored it.

Both servers of the chain (a store, HQ) use this with their own source and handlers. The
delivery is at least once in each direction, with nothing lost when either end or the broker
stops mid-stream: a source forgets a message only after JetStream stored it (``PubAck``), and
JetStream forgets a delivery only after the handler's ``ack``. Duplicates are what is left, and
both ends drop them (message ids: the stream's duplicate window, then the receivers' own
idempotent storage).

HQ owns the broker's contents: its link creates both streams and each enrolled store's two
durable consumers (``maintain``); a store's link only publishes on its own subjects and pulls
from its own consumers, which is all its broker credential allows (laneguard.nats_auth).

A handler that raises ``ChainMessageError`` refused a message for good (malformed, forged):
it is terminated, logged and counted, never redelivered. Any other error is transient (the
database down): the message comes again after ``retry_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from laneguard.chain import ChainMessageError, stream_configs
from laneguard.nats_auth import BrokerUser

log = logging.getLogger("laneguard.jetstream")


@dataclass(frozen=True)
class Publication:
    subject: str
    message_id: str
    data: bytes


@dataclass(frozen=True)
class Consumer:
    """A durable pull consumer: ``handler(subject, data)`` stores one message; a
    ``batch_handler`` (a list of them) stores what one fetch brought in one go and says, per
    message, None (stored) or why not."""

    durable: str
    stream: str
    subject: str
    handler: Callable[[str, bytes], None]
    batch_handler: Callable[[list[tuple[str, bytes]]], list[Exception | None]] | None = None


@dataclass
class LinkStats:
    published: int = 0
    received: int = 0
    refused: int = 0
    errors: int = 0
    connected: bool = False
    last_error: str = ""


@dataclass
class JetStreamLink:
    url: str
    name: str
    pending: Callable[[int], Sequence[Publication]]  # what to publish now, oldest first
    published: Callable[[Sequence[Publication]], None]  # the stream stored all of these
    consumers: Sequence[Consumer] = ()
    batch: int = 200
    idle_s: float = 0.5
    retry_s: float = 2.0
    user: BrokerUser | None = None  # its broker credential (None: a broker without accounts)
    tls: ssl.SSLContext | None = None  # TLS to the broker (a tls:// URL), trusting its CA
    owns_streams: bool = False  # HQ: create the streams (stores may not)
    # The JetStream API prefix (a store's account reaches HQ's stream through its imports,
    # laneguard.nats_auth.STORE_JS_API); None: the broker's own "$JS.API".
    api_prefix: str | None = None
    # HQ: brings the broker up to what it should hold (each enrolled store's consumers), on
    # connecting and every ``maintain_s`` after.
    maintain: Callable[[Any], Awaitable[None]] | None = None
    maintain_s: float = 10.0
    # Run (in a worker thread) before every connection attempt: a store renews its broker
    # credential here, so one that expired while the store was offline is renewed first.
    prepare: Callable[[], object] | None = None
    stats: LinkStats = field(default_factory=LinkStats)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _maintain_due: bool = field(default=False, repr=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name=f"jetstream-{self.name}")
        self._thread.daemon = True
        self._thread.start()

    def wake(self) -> None:
        """Something new to publish: do not wait for the idle pause."""
        self._wake.set()

    def maintain_now(self) -> None:
        """Something the ``maintain`` step keeps changed (a store enrolled): run it next."""
        self._maintain_due = True
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        while not self._stop.is_set():
            nc = None
            try:
                if self.prepare is not None:
                    await asyncio.to_thread(self.prepare)
                nc = await self._connect()
                await self._serve(nc)
            except Exception as error:  # the broker down or gone: try again
                self.stats.errors += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"
                log.warning("%s: JetStream link: %s; retrying", self.name, self.stats.last_error)
                await self._pause(self.retry_s)
            finally:
                self.stats.connected = False
                if nc is not None:
                    with contextlib.suppress(Exception):
                        await nc.close()

    async def _connect(self) -> Any:
        import nats

        async def quiet(error: Exception) -> None:
            log.debug("%s: NATS: %s", self.name, error)

        options: dict[str, Any] = self.user.connect_options() if self.user else {}
        if self.tls is not None:
            options["tls"] = self.tls
        return await nats.connect(
            self.url,
            name=f"laneguard-{self.name}",
            connect_timeout=2,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            allow_reconnect=True,
            error_cb=quiet,
            **options,
        )

    async def _serve(self, nc: Any) -> None:
        js = nc.jetstream(timeout=5.0, **({"prefix": self.api_prefix} if self.api_prefix else {}))
        if self.owns_streams:
            await ensure_streams(js)
        maintained = -math.inf
        if self.maintain is not None:
            await self.maintain(js)
            maintained = time.monotonic()
        subscriptions = [
            (await js.pull_subscribe(c.subject, durable=c.durable, stream=c.stream), c)
            for c in self.consumers
        ]
        self.stats.connected = True
        while not self._stop.is_set():
            due = self._maintain_due or time.monotonic() - maintained > self.maintain_s
            if self.maintain is not None and due:
                self._maintain_due = False
                await self.maintain(js)
                maintained = time.monotonic()
            sent = await self._publish(js)
            received = 0
            for subscription, consumer in subscriptions:
                received += await self._receive(subscription, consumer)
            if not sent and not received:
                await self._pause(self.idle_s)

    async def _publish(self, js: Any) -> int:
        batch = list(await asyncio.to_thread(self.pending, self.batch))
        if not batch:
            return 0
        acks = await asyncio.gather(
            *(js.publish(p.subject, p.data, headers={"Nats-Msg-Id": p.message_id}) for p in batch)
        )
        assert len(acks) == len(batch)
        await asyncio.to_thread(self.published, batch)
        self.stats.published += len(batch)
        return len(batch)

    async def _receive(self, subscription: Any, consumer: Consumer) -> int:
        import nats.errors

        try:
            messages = await subscription.fetch(self.batch, timeout=0.05)
        except (nats.errors.TimeoutError, asyncio.TimeoutError):  # nothing waiting
            return 0
        if consumer.batch_handler is not None:
            try:
                outcomes = await asyncio.to_thread(
                    consumer.batch_handler, [(m.subject, m.data) for m in messages]
                )
            except Exception as error:  # the whole batch failed (the database down)
                outcomes = [error] * len(messages)
        else:
            outcomes = [await self._one(consumer, m) for m in messages]
        for message, outcome in zip(messages, outcomes):
            await self._settle(message, outcome)
        return len(messages)

    async def _one(self, consumer: Consumer, message: Any) -> Exception | None:
        try:
            await asyncio.to_thread(consumer.handler, message.subject, message.data)
        except Exception as error:
            return error
        return None

    async def _settle(self, message: Any, outcome: Exception | None) -> None:
        """Acknowledge what was stored; terminate what was refused for good; the rest again."""
        if outcome is None:
            await message.ack()
            self.stats.received += 1
        elif isinstance(outcome, ChainMessageError):
            self.stats.refused += 1
            log.warning("%s: refused a message on %s: %s", self.name, message.subject, outcome)
            await message.term()
        else:
            self.stats.errors += 1
            log.warning("%s: could not store a message (%s); it comes again", self.name, outcome)
            await message.nak(delay=self.retry_s)

    async def _pause(self, seconds: float) -> None:
        await asyncio.to_thread(self._wake.wait, seconds)
        self._wake.clear()


# JetStream's error code for "stream name already in use with a different configuration"
# (JSStreamNameExistErr): the one refusal ensure_streams answers by updating the stream.
STREAM_NAME_IN_USE = 10058


def broker_tls(url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """TLS to the broker: for a ``tls://`` URL or a named CA, a context that checks the
    broker's certificate against ``ca_file`` (default: the system's CAs) and its name."""
    if ca_file is None and not url.startswith("tls://"):
        return None
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


async def ensure_consumer(js: Any, stream: str, durable: str, subject: str) -> None:
    """A durable pull consumer on ``stream`` filtered to ``subject``, as a client's own
    ``pull_subscribe`` would have made it (explicit acks, from the stream's start)."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
    from nats.js.errors import NotFoundError

    try:
        await js.consumer_info(stream, durable)
        return
    except NotFoundError:
        pass
    config = ConsumerConfig(
        name=durable,
        durable_name=durable,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
    )
    await js.add_consumer(stream, config=config)


async def ensure_streams(js: Any) -> None:
    """Both chain streams, created with the shared settings (or brought up to them)."""
    from nats.js.api import StorageType, StreamConfig
    from nats.js.errors import BadRequestError

    for config in stream_configs():
        wanted = StreamConfig(**{**config, "storage": StorageType(config["storage"])})
        try:
            await js.add_stream(wanted)
        except BadRequestError as error:  # exists with other settings: bring it to these
            if error.err_code != STREAM_NAME_IN_USE:
                raise
            await js.update_stream(wanted)
