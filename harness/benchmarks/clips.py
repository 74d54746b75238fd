"""What alert clips cost and how fast they reach the console.

1. The frame loop with clips off and on: the same simulated checkouts (a skipped item each),
   replayed through a real lane in a fresh process each time, alternating off/on, frames
   arriving at the camera's 30 frames/s with the till's scans; frames/s is 1 / the mean time of
   ``Lane.process_frame`` (frames are decoded from memory before each call), so the encoder's
   share of the 2 cores shows as a slower loop, and a frame that takes longer than the camera's
   interval counts as late. Also a worst case: flat out, no till, every item an alert. Each
   run's peak RSS is its own process's (it holds the checkouts' JPEGs too, ~100 MB).
2. Clip at the console: a store server process and a lane service (the simulator's live camera
   and till, as in the demo) for a while; for every alert the time from its raising (the lane's
   clock) to its clip being stored at the store, and each clip's size.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from harness.benchmarks.server_load import store_process
from laneguard.serving import free_port


def _rendered(kind: str, seed: int, fps: float) -> tuple[list[bytes], float, list[Any]]:
    from simulator.recording import lane_inputs
    from simulator.scenario import build_scenario
    from simulator.scene import SceneRenderer
    from simulator.world import World

    world = World.from_catalog()
    scenario = build_scenario(kind, seed, world, fps=fps, n_items=8)
    renderer = SceneRenderer(scenario, world)
    frames = [
        cv2.imencode(".jpg", renderer.render(i)[0], [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
        for i in range(scenario.n_frames)
    ]
    events = sorted((e for e in lane_inputs(scenario) if e.type != "payment"), key=lambda e: e.t)
    return frames, scenario.fps, events


def frame_loop(
    clips: bool, paced: bool, seeds: tuple[int, ...] = (1, 2, 3), fps: float = 30.0
) -> dict[str, Any]:
    """One run in this process (meant for a fresh one): the lane over the seeds' checkouts.

    ``paced``: frames arrive at the camera's rate and the till sends its scans (one skipped
    item per checkout: the alerts a lane really raises); each frame's processing time is
    measured, and a frame still being processed when the next arrives costs that next frame.
    Not paced: flat out with no till at all, so every item is an alert (a worst case: clips to
    make for 8 items a checkout, at 4x the camera's rate)."""
    from checkout_node.catalog import LaneCatalog
    from checkout_node.clips import ClipRecorder
    from checkout_node.lane import Lane
    from checkout_node.model_bundle import load_models
    from checkout_node.outbox import Outbox
    from checkout_node.privacy import PrivacyFilter
    from checkout_node.vision.counting import LaneZones
    from checkout_node.vision.pipeline import LanePipeline

    checkouts = [_rendered("skip_scan", seed, fps) for seed in seeds]
    with tempfile.TemporaryDirectory(prefix="laneguard-clips-") as tmp:
        recorder = (
            ClipRecorder(Path(tmp) / "clips", PrivacyFilter(masks=[[(0, 0), (640, 0), (640, 40)]]))
            if clips
            else None
        )
        outbox = Outbox(Path(tmp) / "outbox.sqlite3")
        lane = Lane(
            "lane-bench",
            LanePipeline(load_models(), LaneZones.standard(640, 480)),
            LaneCatalog.from_file(),
            outbox,
            clips=recorder,
        )
        times: list[float] = []
        late, offset, ring_peak = 0, 0.0, 0
        for jpegs, rate, events in checkouts:
            pending = list(events) if paced else []
            began = time.perf_counter()
            for index, data in enumerate(jpegs):
                t = index / rate
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None
                if paced:
                    time.sleep(max(0.0, began + t - time.perf_counter()))
                while pending and pending[0].t <= t:
                    lane.on_input(pending.pop(0), offset + t)
                started = time.perf_counter()
                lane.process_frame(image, offset + t)
                finished = time.perf_counter()
                times.append(finished - started)
                late += paced and finished > began + (index + 1) / rate
                if recorder is not None:
                    ring_peak = max(ring_peak, recorder.ring.bytes)
            offset += len(jpegs) / rate + 30.0
            lane.end_transaction(offset - 29.0, reason="bench")
        times.sort()
        mean = sum(times) / len(times)
        result: dict[str, Any] = {
            "clips": clips,
            "paced": paced,
            "frames": len(times),
            "fps": round(1 / mean, 1),
            "ms_per_frame": round(1000 * mean, 2),
            "p99_ms": round(1000 * times[int(0.99 * (len(times) - 1))], 2),
            "frames_late": late,
        }
        if recorder is not None:
            recorder.flush()
            stats = recorder.stats
            sizes = [
                len(json.loads(e.payload)["clip_b64"]) * 3 // 4
                for e in outbox.due(10_000)
                if e.kind == "clip"
            ]
            result.update(
                clips_made=stats.made,
                clips_dropped=stats.dropped,
                encode_ms_per_clip=round(1000 * stats.encode_seconds / max(stats.made, 1), 1),
                clip_kb_median=round(statistics.median(sizes) / 1024, 1) if sizes else None,
                ring_peak_mb=round(ring_peak / 2**20, 2),
                ring_cap_mb=round(recorder.buffer_bytes / 2**20, 2),
            )
            recorder.close()
        outbox.close()
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return result


def _in_fresh_process(clips: bool, paced: bool) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(frame_loop, clips, paced).result()


def frame_loop_off_and_on(paced: bool, rounds: int = 2) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    for _ in range(rounds):
        runs["off"].append(_in_fresh_process(False, paced))
        runs["on"].append(_in_fresh_process(True, paced))
    off = statistics.median(r["fps"] for r in runs["off"])
    on = statistics.median(r["fps"] for r in runs["on"])
    return {
        "fps_off": off,
        "fps_on": on,
        "slowdown_pct": round(100 * (off - on) / off, 1),
        "runs": runs,
    }


def clip_latency(seconds: float = 120.0, fps: float = 15.0) -> dict[str, Any]:
    """A store and one simulated lane running for ``seconds``: alert-to-stored-clip times."""
    from sqlmodel import Session, select

    from checkout_node.service import LaneService
    from checkout_node.settings import LaneSettings
    from laneguard.serving import serve_in_thread
    from product_db.db import make_engine
    from simulator.feed import LiveFeed
    from simulator.world import World
    from store_server.models import AlertClip, AlertRecord

    with tempfile.TemporaryDirectory(prefix="laneguard-cliplat-") as tmp:
        root = Path(tmp)
        with store_process(root, 1) as (base, tokens):
            lane_port, feed_port = free_port(), free_port()
            lane_url = f"http://127.0.0.1:{lane_port}"
            feed = LiveFeed(
                World.from_catalog(), "mixed", 7, "127.0.0.1", feed_port, fps, lane_url, loop=True
            )
            service = LaneService(
                LaneSettings(
                    lane_id="lane-0",
                    camera=f"{feed.url}/stream.mjpg",
                    server_url=base,
                    allow_plain_http=True,  # store_process serves plain HTTP (server_load)
                    enrolment_token=tokens[0],
                    data_dir=root / "lane",
                    http_port=lane_port,
                )
            )
            service.start()
            with serve_in_thread(service.app, "127.0.0.1", lane_port):
                feed.start()
                time.sleep(seconds)
                feed.close()
                time.sleep(12.0)  # the last alerts' clips: after-window, encoding, delivery
                service.stop()
            engine = make_engine(f"sqlite:///{root / 'store.sqlite3'}")
            with Session(engine) as session:
                alerts = {a.alert_id: a for a in session.exec(select(AlertRecord))}
                clips = list(session.exec(select(AlertClip)))
            engine.dispose()
    latencies = []
    for clip in clips:
        alert = alerts.get(clip.alert_id)
        if alert is None:
            continue
        raised = alert.raised_at.replace(tzinfo=alert.raised_at.tzinfo or timezone.utc)
        received = clip.received_at.replace(tzinfo=clip.received_at.tzinfo or timezone.utc)
        latencies.append((received - raised).total_seconds())
    latencies.sort()
    sizes = sorted(c.size for c in clips)
    return {
        "seconds": seconds,
        "alerts": len(alerts),
        "clips": len(clips),
        "latency_s": {
            "p50": round(statistics.median(latencies), 2) if latencies else None,
            "p95": round(latencies[int(0.95 * (len(latencies) - 1))], 2) if latencies else None,
            "max": round(latencies[-1], 2) if latencies else None,
        },
        "clip_kb": {
            "median": round(statistics.median(sizes) / 1024, 1) if sizes else None,
            "max": round(sizes[-1] / 1024, 1) if sizes else None,
        },
        "clip_format": "WebM/VP8, 320x240, 8 frames/s, 3 s before to 1.5 s after the event",
    }


def run(seconds: float = 120.0) -> dict[str, Any]:
    return {
        "frame_loop": frame_loop_off_and_on(paced=True),
        "worst_case": frame_loop_off_and_on(paced=False, rounds=1),
        "console": clip_latency(seconds),
    }
