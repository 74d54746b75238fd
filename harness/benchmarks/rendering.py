"""Rendering speed: frames per second of 640x480 on one core (target: at least 100)."""

from __future__ import annotations

import time
from typing import Any

import cv2

from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World


def run(seconds_of_video: float = 60.0, seed: int = 7) -> dict[str, Any]:
    """Render mixed transactions on one thread; report frames/s and ms per frame."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        world = World.from_catalog()
        frames, elapsed, boxes, current = 0, 0.0, 0, seed
        while frames < seconds_of_video * 30:
            scenario = build_scenario("mixed", current, world, fps=30.0, n_items=20)
            renderer = SceneRenderer(scenario, world)
            start = time.perf_counter()
            for _, _, found in renderer.frames():
                frames += 1
                boxes += len(found)
            elapsed += time.perf_counter() - start
            current += 1
    finally:
        cv2.setNumThreads(threads)
    fps = frames / elapsed
    return {
        "frames": frames,
        "resolution": "640x480",
        "threads": 1,
        "frames_per_second": round(fps, 1),
        "ms_per_frame": round(1000 / fps, 2),
        "mean_objects_per_frame": round(boxes / frames, 2),
        "target_fps": 100,
        "meets_target": fps >= 100,
    }
