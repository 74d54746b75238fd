"""Frame sources: the simulator's live feed as a camera, reconnect, and no backlog."""

from __future__ import annotations

import time

from checkout_node.sources import LiveSource, video_frames
from simulator.feed import LiveFeed
from simulator.recording import write_scenario
from simulator.scenario import build_scenario
from simulator.world import World
from tests.helpers.live_server import free_port


def test_camera_that_comes_up_late_is_reconnected_and_never_backlogged() -> None:
    port = free_port()
    source = LiveSource(f"http://127.0.0.1:{port}/stream.mjpg", max_backoff_s=1.0).start()
    try:
        time.sleep(1.5)  # no camera yet: the reader retries with backoff
        assert not source.connected and source.reconnects >= 1
        feed = LiveFeed(World.from_catalog(), "honest", 5, port=port, fps=20.0).start()
        try:
            first = source.read(timeout=20)
            assert first is not None and first.image.shape == (480, 640, 3)
            time.sleep(1.0)  # a slow lane: frames arrive while it is busy
            newest = source.read(timeout=5)
            assert newest is not None and newest.index > first.index + 5
            assert source.dropped >= newest.index - first.index - 1 > 0
            assert source.connected
        finally:
            feed.close()
    finally:
        source.stop()


def test_video_file_frames_are_timed_by_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    world = World.from_catalog()
    scenario = build_scenario("honest", 2, world, fps=12.0, n_items=2)
    video = write_scenario(scenario, world, tmp_path)["video"]
    frames = list(video_frames(video))
    assert len(frames) == scenario.n_frames
    assert frames[12].t == 1.0 and frames[12].index == 12
