"""The live feed: a real MJPEG camera stream and till events POSTed to a real HTTP receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter

from laneguard.wire import LaneInput
from simulator.feed import LiveFeed
from simulator.recording import lane_inputs
from simulator.scenario import build_scenario
from simulator.world import World
from tests.helpers.live_server import free_port, serve


@pytest.fixture
def receiver() -> Iterator[tuple[str, list]]:
    received: list = []
    adapter = TypeAdapter(LaneInput)
    app = FastAPI()

    @app.post("/api/pos/events")
    async def events(body: dict) -> dict:  # type: ignore[type-arg]
        received.append(adapter.validate_python(body))
        return {"ok": True}

    with serve(app) as url:
        yield url, received


def test_feed_streams_frames_and_sends_events_in_time(receiver: tuple[str, list]) -> None:
    node_url, received = receiver
    world = World.from_catalog()
    feed = LiveFeed(world, "honest", 3, port=free_port(), fps=15.0, node_url=node_url).start()
    try:
        capture = cv2.VideoCapture(f"{feed.url}/stream.mjpg")
        assert capture.isOpened(), "OpenCV opens the feed like an IP camera"
        ok, frame = capture.read()
        assert ok and frame.shape == (480, 640, 3)
        capture.release()
        started = time.monotonic()
        assert feed.wait(timeout=120)
        expected = lane_inputs(build_scenario("honest", 3, world, fps=15.0))
        scenario_seconds = expected[-1].t
        assert time.monotonic() - started >= 0.5 * scenario_seconds, "played in real time"
    finally:
        feed.close()
    assert [m.event_id for m in received] == [m.event_id for m in expected]
    assert feed.state.events_failed == 0
    assert feed.state.frames_rendered > 0.8 * 15 * scenario_seconds
