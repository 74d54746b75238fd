"""Writing a scenario to disk: video, scan/POS events as JSON lines, and the ground truth.

DIR/video.mp4          the camera's view (mp4v, the scenario's fps)
DIR/events.jsonl       scan and POS events in time order, in the wire schema
DIR/ground_truth.json  the transaction's truth and every frame's boxes
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2

from laneguard.wire import PosMessage, ScanMessage
from product_db.errors import LaneGuardError
from simulator.scenario import Scenario
from simulator.scene import SceneRenderer
from simulator.world import World


class RecordingError(LaneGuardError, RuntimeError):
    """A scenario video this computer cannot write (its OpenCV has no mp4 writer)."""


def lane_inputs(scenario: Scenario) -> list[ScanMessage | PosMessage]:
    """The scenario's scan and POS events as wire messages, in time order."""
    transaction = f"sim-{scenario.kind}-{scenario.seed}"
    messages: list[ScanMessage | PosMessage] = []
    for i, scan in enumerate(scenario.scans):
        messages.append(
            ScanMessage(
                event_id=f"{transaction}-scan-{i}",
                t=scan.t,
                code=scan.code,
                quantity=scan.quantity,
                weight_g=scan.weight_g,
                source=scan.source,
            )
        )
    for i, pos in enumerate(scenario.pos_events):
        messages.append(
            PosMessage(
                event_id=f"{transaction}-pos-{i}",
                t=pos.t,
                type=pos.type,
                transaction_id=transaction,
            )
        )
    messages.sort(key=lambda m: m.t)
    return messages


def write_scenario(scenario: Scenario, world: World, out: str | Path) -> dict[str, Path]:
    """Render and write the scenario; returns the paths written."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    layout = scenario.layout
    video_path = folder / "video.mp4"
    writer = cv2.VideoWriter(
        str(video_path),
        cv2.VideoWriter.fourcc(*"mp4v"),
        scenario.fps,
        (layout.width, layout.height),
    )
    if not writer.isOpened():
        raise RecordingError(f"OpenCV cannot write mp4 video to {video_path}")
    frames: list[dict[str, Any]] = []
    try:
        for index, frame, boxes in SceneRenderer(scenario, world).frames():
            writer.write(frame)
            frames.append({"frame": index, "boxes": [b.as_list() for b in boxes]})
    finally:
        writer.release()
    events_path = folder / "events.jsonl"
    with events_path.open("w", encoding="utf-8") as handle:
        for message in lane_inputs(scenario):
            handle.write(message.model_dump_json() + "\n")
    truth = scenario.summary()
    truth["box_fields"] = ["track_id", "cls", "x1", "y1", "x2", "y2", "visible", "code"]
    truth["frames"] = frames
    truth_path = folder / "ground_truth.json"
    truth_path.write_text(json.dumps(truth, separators=(",", ":")) + "\n", "utf-8")
    return {"video": video_path, "events": events_path, "ground_truth": truth_path}
