"""The chain's streams on a real, private NATS JetStream server: made with the shared settings,
or brought to them when they exist with others (recognised by JetStream's error code)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError

from laneguard.chain import HQ_STREAM, STORES_STREAM, stream_configs
from laneguard.jetstream import STREAM_NAME_IN_USE, ensure_streams
from tests.helpers.chain import NatsServer


def test_streams_with_other_settings_are_brought_to_the_chains(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()

    async def run() -> dict[str, float]:
        client = await nats.connect(server.url)
        js = client.jetstream()
        try:
            await js.add_stream(
                StreamConfig(name=STORES_STREAM, subjects=["lg.store.>"], max_age=60)
            )
            with pytest.raises(BadRequestError) as clash:  # what ensure_streams meets
                await js.add_stream(
                    StreamConfig(name=STORES_STREAM, subjects=["lg.store.>"], max_age=120)
                )
            assert clash.value.err_code == STREAM_NAME_IN_USE
            await ensure_streams(js)
            await ensure_streams(js)  # again: nothing to change, nothing raised
            ages = {}
            for name in (STORES_STREAM, HQ_STREAM):
                info = await js.stream_info(name)
                ages[name] = float(info.config.max_age or 0)
            return ages
        finally:
            await client.close()

    try:
        ages = asyncio.run(run())
    finally:
        server.stop()
    wanted = {c["name"]: c["max_age"] for c in stream_configs()}
    assert ages == pytest.approx(wanted)
