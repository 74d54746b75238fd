"""`laneguard eval probe`: the linear-probe ceiling of an embedder's vectors, through the CLI
with real bundles (a quick one and the shipped one) and real produce photos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from harness.evals.probe import LabelledVectors, fit_probe, nearest_neighbour_top1, probe_top1
from laneguard.bundle import Manifest


def _run_probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "laneguard.cli", "eval", "probe", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _folders(root: Path) -> tuple[str, ...]:
    return ("--train", str(root / "train"), "--query", str(root / "query"))


def _colour_folders(root: Path, counts: dict[str, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    colours = {"red": (0, 0, 200), "green": (0, 200, 0), "blue": (200, 0, 0)}
    for name, count in counts.items():
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            image = np.full((80, 80, 3), colours[name], np.uint8)
            image = np.clip(image + rng.integers(0, 40, image.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(folder / f"{i}.jpg"), image)


def test_the_probe_learns_a_boundary_nearest_neighbours_miss() -> None:
    # Two classes told apart by the sign of one coordinate, buried under larger noise in the
    # others: a linear rule separates them, the nearest training vector often does not.
    rng = np.random.default_rng(0)

    def sample(n: int) -> LabelledVectors:
        labels = rng.integers(0, 2, n)
        vectors = rng.normal(0, 1, (n, 16))
        vectors[:, 0] = np.where(labels == 1, 1.0, -1.0) * rng.uniform(0.5, 1.0, n)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return LabelledVectors(vectors, labels)

    train, query = sample(400), sample(400)
    weights = fit_probe(train, 2, weight_decay=0.0)
    assert probe_top1(weights, query) >= 0.95
    assert nearest_neighbour_top1(train, query) < 0.85


def test_eval_probe_cli_on_colour_folders(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    bundle, _, _ = quick_bundle
    _colour_folders(tmp_path / "train", {"red": 10, "green": 10, "blue": 10}, seed=1)
    _colour_folders(tmp_path / "query", {"red": 4, "green": 4, "blue": 4}, seed=2)
    done = _run_probe(*_folders(tmp_path), "--bundle", str(bundle))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["n_train"] == 30 and result["n_query"] == 12 and result["n_classes"] == 3
    assert result["weight_decay_chosen_on"] == "every fifth training image"
    assert result["weight_decay"] in (0.0, 1e-4, 1e-3, 1e-2)
    assert result["probe_top1"] >= 0.8 and result["nearest_neighbour_top1"] >= 0.8
    assert result["bundle"] == "quick" and result["embedder"] == "embedder-fp32.onnx"
    assert "torch" not in done.stderr


def test_eval_probe_refuses_query_classes_it_has_no_training_images_of(
    quick_bundle: tuple[Path, Manifest, list[str]], tmp_path: Path
) -> None:
    bundle, _, _ = quick_bundle
    _colour_folders(tmp_path / "train", {"red": 5, "green": 5}, seed=1)
    _colour_folders(tmp_path / "query", {"red": 2, "blue": 2}, seed=2)
    done = _run_probe(*_folders(tmp_path), "--bundle", str(bundle))
    assert done.returncode != 0
    assert "no training images" in done.stderr and "blue" in done.stderr


def test_eval_probe_of_the_shipped_embedder_on_real_produce_photos(
    produce_photos: Path, tmp_path: Path
) -> None:
    classes = ("Banana", "Cucumber", "Red-Beet", "Lemon")
    for split, target in (("train", "train"), ("val", "val"), ("test", "query")):
        for name in classes:
            folder = tmp_path / target / name
            folder.mkdir(parents=True)
            for path in sorted((produce_photos / "images" / split / name).glob("*.jpg"))[:10]:
                shutil.copy(path, folder / path.name)
    done = _run_probe(*_folders(tmp_path), "--val", str(tmp_path / "val"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["weight_decay_chosen_on"] == "val" and result["n_classes"] == 4
    assert result["n_train"] == 40 and result["n_query"] == 40
    # Four unlike classes: the shipped embedder tells them apart (chance is 0.25).
    assert result["probe_top1"] >= 0.85 and result["nearest_neighbour_top1"] >= 0.75
