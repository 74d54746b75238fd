"""The lane pipeline with the shipped bootstrap bundle on simulator recordings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.model_bundle import load_models
from checkout_node.outbox import Outbox
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import CountedItem, LanePipeline
from harness.evals.counting import run_transaction
from laneguard.bundle import SHIPPED_BUNDLE
from laneguard.wire import PosMessage
from simulator.recording import write_scenario
from simulator.scenario import Scenario, build_scenario
from simulator.scene import SceneRenderer
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
        "from checkout_node.model_bundle import load_models\n"
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
    from trainer.bootstrap import EMBED_CROP_BUDGET_MS, PROFILE_SLOWDOWN

    pi = load_models(SHIPPED_BUNDLE, profile="raspberry-pi-5")
    # The Pi takes the most accurate embedder whose estimated time per crop fits the budget
    # (the shipped int8 embedder loses 13 points of top-1: the float one fits and wins).
    embedders = [m for m in pi.manifest.models if m.role == "embedder"]
    fitting = [
        m
        for m in embedders
        if (m.latency_ms or 1e9) * PROFILE_SLOWDOWN["raspberry-pi-5"] <= EMBED_CROP_BUDGET_MS
    ]
    assert fitting
    assert pi.embedder == max(fitting, key=lambda m: m.metrics["known_top1"])
    explicit = load_models(SHIPPED_BUNDLE, detector_precision="int8", detector_size=416)
    assert explicit.detector.file == "detector-416-int8.onnx"
    with pytest.raises(ValueError, match="no hardware profile 'toaster'"):
        load_models(SHIPPED_BUNDLE, profile="toaster")


def _replay(
    scenario: Scenario, world: World, embed_lag_frames: int
) -> list[tuple[int, CountedItem]]:
    """(frame index it came out, item) for every item a pipeline counted over the scenario;
    items handed over by the final flush get the index one past the last frame."""
    pipeline = LanePipeline(
        load_models(),
        LaneZones.standard(scenario.layout.width, scenario.layout.height),
        embed_lag_frames=embed_lag_frames,
    )
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    out = []
    for index in range(scenario.n_frames):
        result = pipeline.process(renderer.render(index)[0], index / scenario.fps)
        out += [(index, item) for item in result.counted]
    out += [(scenario.n_frames, item) for item in pipeline.flush()]
    pipeline.close()
    return out


def test_identities_come_from_the_worker_a_fixed_number_of_frames_later(world: World) -> None:
    # The embedder works off the frame loop; the items, their identities and evidence are the
    # same as when it runs in the frame, only handed over 3 frames after they count.
    scenario = build_scenario("honest", 21, world, fps=30.0, n_items=5)
    in_frame = _replay(scenario, world, embed_lag_frames=0)
    in_worker = _replay(scenario, world, embed_lag_frames=3)
    assert len(in_frame) == 5
    assert [item.track_id for _, item in in_worker] == [item.track_id for _, item in in_frame]
    for (counted_at, now), (handed_at, later) in zip(in_frame, in_worker, strict=True):
        assert handed_at == min(counted_at + 3, scenario.n_frames)
        assert (later.code, later.band, later.crossed_s) == (now.code, now.band, now.crossed_s)
        assert later.score == pytest.approx(now.score, abs=1e-5)
        assert later.crop_jpeg == now.crop_jpeg


def test_a_transaction_that_ends_while_an_item_is_identified_still_has_it(
    world: World, tmp_path: Path
) -> None:
    # The till closes the sale in the frame right after the last item counts: the lane takes
    # the items the worker still holds before the final check, so none is lost or left over
    # to open a phantom transaction.
    scenario = build_scenario("honest", 22, world, fps=30.0, n_items=3)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    pipeline = LanePipeline(
        load_models(), LaneZones.standard(640, 480), embed_lag_frames=1_000
    )  # nothing comes out of process(): everything waits for the end of the transaction
    lane = Lane("lane-lag", pipeline, LaneCatalog.from_file(), outbox)
    till = {"event_id": "e1", "transaction_id": "t-lag", "t": 0.0}
    lane.on_input(PosMessage(type="transaction_start", **till))
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    for index in range(scenario.n_frames):
        lane.process_frame(renderer.render(index)[0], index / scenario.fps)
    assert lane.transaction is not None and not lane.transaction.items
    assert pipeline.identifying
    lane.on_input(PosMessage(type="transaction_end", **{**till, "event_id": "e2"}))
    outcome = lane.last_outcome
    assert outcome is not None and outcome.transaction_id == "t-lag"
    assert len(outcome.seen) == 3
    assert not pipeline.identifying and lane.transaction is None
    outbox.close()


def test_a_negative_embed_lag_is_refused() -> None:
    with pytest.raises(ValueError, match="embed_lag_frames must be 0 or more, got -1"):
        LanePipeline(load_models(), LaneZones.standard(), embed_lag_frames=-1)
