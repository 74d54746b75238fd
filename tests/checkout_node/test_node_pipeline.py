"""The lane pipeline with the shipped bootstrap bundle on simulator recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from checkout_node.models import load_models
from harness.evals.counting import run_transaction
from laneguard.bundle import SHIPPED_BUNDLE
from simulator.recording import write_scenario
from simulator.scenario import build_scenario
from simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World.from_catalog()


@pytest.fixture(scope="module")
def recorded(world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    scenario = build_scenario("honest", 3, world, fps=15.0, n_items=4)
    folder = tmp_path_factory.mktemp("lane")
    paths = write_scenario(scenario, world, folder)
    return folder, {"scenario": scenario, **paths}


def test_node_never_loads_torch_or_ultralytics() -> None:
    code = (
        "import sys, checkout_node.cli, checkout_node.vision.pipeline, checkout_node.sources\n"
        "from checkout_node.models import load_models\n"
        "from checkout_node.vision.pipeline import LanePipeline\n"
        "from checkout_node.vision.counting import LaneZones\n"
        "LanePipeline(load_models(), LaneZones.standard())\n"
        "print([m for m in ('torch', 'ultralytics') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_replay_prints_counted_items_and_events_and_annotates(
    recorded: tuple[Path, dict], tmp_path: Path
) -> None:
    _, data = recorded
    scenario = data["scenario"]
    annotated = tmp_path / "annotated.mp4"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "laneguard.cli",
            "node",
            "replay",
            str(data["video"]),
            "--events",
            str(data["events"]),
            "--annotate",
            str(annotated),
            "--crops",
            str(tmp_path / "crops"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    items = [line for line in lines if line["type"] == "item"]
    scans = [line for line in lines if line["type"] == "scan"]
    assert len(items) == len(scenario.true_items)
    assert len(scans) == len(scenario.scans)
    for item in items:
        assert item["band"] in ("trusted", "of_interest", "unknown")
        assert item["entered_s"] < item["crossed_s"] and item["crop_bytes"] > 0
        assert (tmp_path / "crops" / f"{item['track_id']}.jpg").exists()
    capture = cv2.VideoCapture(str(annotated))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == scenario.n_frames
    capture.release()
    assert "items counted" in done.stderr


@pytest.mark.parametrize(("seed", "detect_interval"), [(11, 1), (12, 1), (11, 2), (12, 2)])
def test_counts_match_ground_truth_in_mixed_transactions(
    produce_photos: Path, seed: int, detect_interval: int
) -> None:
    # A regression check on transactions the shipped models count exactly, detecting on every
    # frame and on every other frame; the accuracy over many transactions is measured by
    # `laneguard bench node-counting`.
    world = World.from_catalog(produce_photos=produce_photos)
    scenario = build_scenario("mixed", seed, world, fps=30.0, n_items=8)
    result = run_transaction(scenario, world, load_models(), detect_interval=detect_interval)
    if detect_interval > 1:
        assert result.detected_frames == -(-result.frames // detect_interval)
    visible_missed = [m for m in result.missed if m["behaviour"] != "stacked"]
    assert not visible_missed, f"missed: {visible_missed}"
    assert not result.extra, f"counted twice or counted nothing: {result.extra}"


def test_models_follow_the_hardware_profile() -> None:
    pi = load_models(SHIPPED_BUNDLE, profile="raspberry-pi-5")
    assert pi.embedder.precision == "int8"
    explicit = load_models(SHIPPED_BUNDLE, detector_precision="int8", detector_size=416)
    assert explicit.detector.file == "detector-416-int8.onnx"
    with pytest.raises(ValueError, match="no hardware profile 'toaster'"):
        load_models(SHIPPED_BUNDLE, profile="toaster")
