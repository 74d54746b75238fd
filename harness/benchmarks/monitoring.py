"""What monitoring and events cost: /metrics scrape time on a lane and a store server, and the
ingest latency MQTT publishing adds at 500 transactions/s.

The MQTT comparison runs the same paced load twice on fresh store processes, once without a
broker configured and once publishing to the Mosquitto on this machine (127.0.0.1:1883); one
transaction in ten comes with an alert (50 alerts/s, far more than a store raises), and each
alert is an event queued on disk and published with QoS 1.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.model_bundle import load_models
from checkout_node.outbox import Outbox
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from harness.benchmarks.server_load import _ingest_load, store_process
from laneguard.serving import serve_in_thread
from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World

BROKER = ("127.0.0.1", 1883)
SCRAPES = 200


def _timed_scrapes(url: str, count: int = SCRAPES) -> dict[str, float]:
    times = []
    with httpx.Client(timeout=10) as client:
        client.get(url).raise_for_status()  # warm up
        for _ in range(count):
            started = time.perf_counter()
            client.get(url).raise_for_status()
            times.append(1000 * (time.perf_counter() - started))
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p99_ms": round(times[int(0.99 * (len(times) - 1))], 2),
        "max_ms": round(times[-1], 2),
        "scrapes": count,
    }


def lane_scrape() -> dict[str, Any]:
    """A lane that has processed a checkout (10 items, alerts, a full outbox), scraped."""
    world = World.from_catalog()
    scenario = build_scenario("mixed", 5, world, fps=30.0, n_items=10)
    with tempfile.TemporaryDirectory(prefix="laneguard-scrape-") as tmp:
        outbox = Outbox(Path(tmp) / "outbox.sqlite3")
        lane = Lane(
            "lane-bench",
            LanePipeline(load_models(), LaneZones.standard(640, 480)),
            LaneCatalog.from_file(),
            outbox,
        )
        renderer = SceneRenderer(scenario, world)
        for index in range(scenario.n_frames):
            lane.process_frame(renderer.render(index)[0], index / scenario.fps)
        lane.end_transaction(scenario.duration, reason="bench")
        with serve_in_thread(create_lane_app(lane, ScreenHub(), live_clock=False)) as url:
            timing = _timed_scrapes(f"{url}/metrics")
            size = len(httpx.get(f"{url}/metrics").content)
        outbox.close()
    return {**timing, "bytes": size, "frames_processed": scenario.n_frames}


def _broker_up() -> bool:
    try:
        with socket.create_connection(BROKER, timeout=1):
            return True
    except OSError:
        return False


def _store_run(root: Path, mqtt: bool, seconds: float, lanes: int) -> dict[str, Any]:
    env = {"LANEGUARD_MQTT_URL": f"mqtt://{BROKER[0]}:{BROKER[1]}"} if mqtt else {}
    with store_process(root, lanes, env) as (base, tokens):
        load = asyncio.run(
            _ingest_load(base, tokens, seconds, per_request=1, rate=500.0, alert_every=10)
        )
        scrape = _timed_scrapes(f"{base}/metrics")
    return {"ingest": load, "store_scrape": scrape}


def run(seconds: float = 20.0, lanes: int = 50) -> dict[str, Any]:
    result: dict[str, Any] = {"lane_scrape": lane_scrape()}
    with tempfile.TemporaryDirectory(prefix="laneguard-mqtt-off-") as tmp:
        result["without_mqtt"] = _store_run(Path(tmp), False, seconds, lanes)
    if _broker_up():
        with tempfile.TemporaryDirectory(prefix="laneguard-mqtt-on-") as tmp:
            result["with_mqtt"] = _store_run(Path(tmp), True, seconds, lanes)
        off = result["without_mqtt"]["ingest"]["latency_ms"]["p99"]
        on = result["with_mqtt"]["ingest"]["latency_ms"]["p99"]
        result["mqtt_adds_to_ingest_p99_ms"] = round(on - off, 1)
    else:
        result["with_mqtt"] = {"skipped": f"no MQTT broker at {BROKER[0]}:{BROKER[1]}"}
    result["load"] = "500 transactions/s paced over 50 lanes, one alert per 10 transactions"
    return result
