"""The peer for the lane benchmark: ultralytics' own tracking and ObjectCounter solution.

It runs the very same detector file (the bundle's ONNX) through `model.track(...)` with
ultralytics' ByteTrack and counts line crossings with `solutions.ObjectCounter`, on the same
video, so frames per second and counts compare like for like.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2

from trainer.offline import configure_offline


def run_object_counter(
    video: Path, model: Path, imgsz: int, line_x: float, top: float, bottom: float
) -> dict[str, Any]:
    configure_offline()
    from ultralytics import solutions

    counter = solutions.ObjectCounter(
        model=str(model),
        region=[(line_x, top), (line_x, bottom)],
        classes=[0],
        imgsz=imgsz,
        tracker="bytetrack.yaml",
        show=False,
        verbose=False,
        device="cpu",
    )
    capture = cv2.VideoCapture(str(video))
    frames = 0
    start = time.perf_counter()
    result = None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        result = counter(frame)
        frames += 1
    elapsed = time.perf_counter() - start
    capture.release()
    count = (result.in_count + result.out_count) if result is not None else 0
    return {
        "frames": frames,
        "seconds": round(elapsed, 2),
        "fps": round(frames / elapsed, 1),
        "count": int(count),
    }
