"""Simulator outputs: recorded scenarios, training datasets, the montage, real produce photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from pydantic import TypeAdapter

from laneguard.wire import LaneInput
from simulator.datasets import DETECT_NAMES, write_detect_dataset, write_embed_dataset
from simulator.montage import montage
from simulator.produce import ProduceDataError, ProducePhotos, produce_sprite
from simulator.recording import write_scenario
from simulator.scenario import KINDS, build_scenario
from simulator.world import World


@pytest.fixture(scope="module")
def world() -> World:
    return World.from_catalog()


def test_recorded_scenario_video_events_and_truth_agree(world: World, tmp_path: Path) -> None:
    scenario = build_scenario("ticket_switch", 4, world, fps=15.0)
    paths = write_scenario(scenario, world, tmp_path)
    video = cv2.VideoCapture(str(paths["video"]))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == scenario.n_frames
    ok, frame = video.read()
    assert ok and frame.shape == (480, 640, 3)
    video.release()
    adapter = TypeAdapter(LaneInput)
    lines = paths["events"].read_text().splitlines()
    messages = [adapter.validate_json(line) for line in lines]
    assert [m.t for m in messages] == sorted(m.t for m in messages)
    scans = [m for m in messages if m.type == "scan"]
    assert [s.code for s in scans] == [s.code for s in scenario.scans]
    truth = json.loads(paths["ground_truth"].read_text())
    assert len(truth["frames"]) == scenario.n_frames
    assert truth["expected_alerts"][0]["type"] == "switch"
    assert truth["true_items"] == scenario.true_items
    assert set(truth["zones"]) == {"belt", "scan_area", "bagging_area"}


def test_detect_dataset_is_valid_yolo(world: World, tmp_path: Path) -> None:
    report = write_detect_dataset(world, tmp_path, n=30, seed=3)
    assert report.images == 30 and report.boxes["product"] > 0 and report.boxes["hand"] > 0
    images = sorted((tmp_path / "images").rglob("*.jpg"))
    labels = sorted((tmp_path / "labels").rglob("*.txt"))
    assert len(images) == len(labels) == 30
    assert len(list((tmp_path / "images" / "val").glob("*.jpg"))) == 3
    for label in labels:
        for line in label.read_text().split("\n"):
            if not line:
                continue
            cls, *coords = line.split()
            assert int(cls) in DETECT_NAMES
            assert all(0.0 <= float(c) <= 1.0 for c in coords)
    data = (tmp_path / "data.yaml").read_text()
    assert "train: images/train" in data and "2: non_merchandise" in data


def test_embed_dataset_keeps_holdout_out_and_can_make_it_alone(
    world: World, tmp_path: Path
) -> None:
    known = write_embed_dataset(world, tmp_path / "known", per_product=2, seed=1)
    folders = {p.name for p in (tmp_path / "known").iterdir()}
    assert folders == {p.code for p in world.known}
    assert not folders & world.holdout
    assert known.images == 2 * len(world.known)
    write_embed_dataset(world, tmp_path / "new", per_product=2, seed=1, selection="holdout")
    assert {p.name for p in (tmp_path / "new").iterdir()} == set(world.holdout)
    crop = cv2.imread(str(next((tmp_path / "new").rglob("*.jpg"))))
    assert crop is not None and min(crop.shape[:2]) >= 40


def test_montage_has_a_tile_per_kind(world: World) -> None:
    sheet = montage(world, seed=2, columns=4, tile_width=160)
    rows = -(-len(KINDS) // 4)
    assert sheet.shape[1] == 640 and sheet.shape[0] == rows * 120


def test_real_produce_photos_are_used(produce_photos: Path, tmp_path: Path) -> None:
    from random import Random

    photos = ProducePhotos.open(produce_photos)
    assert len(photos.by_plu) == 50
    sprite = produce_sprite("4011", Random(1), photos, ("test",))
    assert sprite.alpha.max() == 255 and sprite.alpha.min() == 0
    world = World.from_catalog(produce_photos=produce_photos)
    write_embed_dataset(world, tmp_path, per_product=1, selection="all", photo_splits=("val",))
    assert (tmp_path / "4011").is_dir()


def test_missing_photo_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProduceDataError, match="no images/ folder"):
        ProducePhotos.open(tmp_path)


def test_cli_scenario_and_errors(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "laneguard.cli", "sim"]
    done = subprocess.run(
        [
            *cmd,
            "scenario",
            "--kind",
            "skip_scan",
            "--seed",
            "2",
            "--fps",
            "10",
            "--items",
            "3",
            "--out",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "1 expected alerts" in done.stdout
    assert (tmp_path / "s" / "video.mp4").stat().st_size > 10_000
    bad = subprocess.run(
        [*cmd, "scenario", "--kind", "nope", "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "'nope' is not one of" in bad.stderr
    missing = subprocess.run(
        [
            *cmd,
            "dataset",
            "--task",
            "embed",
            "--n",
            "1",
            "--out",
            str(tmp_path / "d"),
            "--produce-photos",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "no images/ folder" in missing.stderr
    assert "Traceback" not in missing.stderr
