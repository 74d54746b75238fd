"""`laneguard eval scenes`: the lane's detector on still photos, counted and boxed against a
person's truth. Box metrics on hand-made boxes, the photo <-> lane frame mapping, the CLI end to
end on simulator frames saved as photos of other sizes, its refusals, and the shipped bundle on
a few real photos when they are on this machine."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path
from random import Random
from typing import Any

import cv2
import numpy as np
import pytest
from click.testing import CliRunner, Result

from harness.evals.scenes import (
    BoxScore,
    PhotoResult,
    fit_to_lane_frame,
    match_to_photos,
    merged_mask,
    own_box_pairs,
    score_boxes,
    score_curve,
    summarise,
)
from laneguard.cli import main
from laneguard.detection import PAD_VALUE
from tests.helpers.paths import REPO_ROOT
from trainer.verifier import VERIFIER_FILE

METRIC_KEYS = {"photos", "products", "count_abs_error_share", "exact_share"}
BOX_KEYS = {"own_box_recall", "merged_box_share", "precision"}


def _boxes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    return np.array(rows, np.float64).reshape(-1, 4)


def _scenes(*args: str) -> Result:
    return CliRunner().invoke(main, ["eval", "scenes", *args])


# --- metrics on hand-made boxes -------------------------------------------------------------


def test_box_scores_on_hand_made_boxes() -> None:
    truth = _boxes(
        (0, 0, 10, 10),  # A: its own detection below
        (20, 0, 30, 10),  # B and C: one detection around both
        (32, 0, 42, 10),
        (60, 0, 70, 10),  # D: missed
    )
    detections = _boxes(
        (1, 0, 11, 10),  # IoU 9/11 with A
        (19, 0, 43, 10),  # covers B and C wholly; IoU with each < 0.5
        (100, 100, 110, 110),  # on nothing
    )
    assert own_box_pairs(detections, truth) == [(0, 0)]
    assert merged_mask(detections, truth).tolist() == [False, True, False]
    assert score_boxes(detections, truth) == BoxScore(truths=4, detections=3, own=1, merged=1)


def test_own_boxes_are_one_to_one_at_iou_half() -> None:
    truth = _boxes((0, 0, 10, 10), (0, 0, 10, 10.5))
    # Two detections on the same pair of near-identical truths: each truth gets one, the
    # better overlap first; a third detection at IoU exactly 0.5 counts, one just under not.
    detections = _boxes((0, 0, 10, 10), (0, 0, 10, 10.4), (100, 0, 110, 10))
    assert sorted(own_box_pairs(detections, truth)) == [(0, 0), (1, 1)]
    half = _boxes((0, 0, 20, 10))  # IoU with (0, 0, 10, 10) = 100 / 200
    assert own_box_pairs(half, _boxes((0, 0, 10, 10))) == [(0, 0)]
    under = _boxes((0, 0, 20.5, 10))
    assert own_box_pairs(under, _boxes((0, 0, 10, 10))) == []
    assert own_box_pairs(_boxes(), truth) == [] and own_box_pairs(detections, _boxes()) == []


def test_a_product_is_covered_when_half_its_box_is_inside() -> None:
    detection = _boxes((0, 0, 20, 10))
    # The first truth lies wholly inside (covered), the second 40% (not): one covered.
    assert merged_mask(detection, _boxes((0, 0, 10, 10), (16, 0, 26, 10))).tolist() == [False]
    # Now 50% and 60%: both covered, the box is merged.
    assert merged_mask(detection, _boxes((-5, 0, 5, 10), (14, 0, 24, 10))).tolist() == [True]
    assert merged_mask(detection, _boxes()).tolist() == [False]


def test_totals_weigh_each_item_and_ratios_with_nothing_to_divide_are_null() -> None:
    photos = [
        PhotoResult("a/1.jpg", 10, 7, 12, BoxScore(10, 8, 6, 1), BoxScore(10, 14, 9, 2)),
        PhotoResult(
            "a/2.jpg", 2, 2, 3, BoxScore(2, 2, 2, 0), BoxScore(2, 3, 2, 0), (0.9, 0.3, 0.12)
        ),
        PhotoResult("b/3.jpg", None, 4, 5),  # listed, not scored for count
    ]
    result = summarise(photos, with_boxes=True)
    assert result["photos"] == 3 and result["counted_photos"] == 2 and result["products"] == 12
    assert result["found"] == 13
    assert result["count_abs_error_share"] == 0.25 and result["count_signed_error_share"] == -0.25
    assert result["exact_share"] == 0.5 and result["exact_photos"] == 1
    assert result["own_box_recall"] == round(8 / 12, 4)
    assert result["merged_box_share"] == 0.1 and result["precision"] == 0.8
    low = result["low_score"]
    assert low["found"] == 20 and low["count_abs_error_share"] == 0.25
    assert low["count_signed_error_share"] == 0.25
    assert low["exact_share"] == 0.0
    assert low["own_box_recall"] == round(11 / 12, 4)
    assert low["merged_box_share"] == round(2 / 17, 4) and low["precision"] == round(11 / 17, 4)
    # The second photo's boxes scored 0.9, 0.3 and 0.12: 2 products, counted right at 0.3.
    curve = {row["score"]: row for row in summarise(photos[1:], with_boxes=False)["by_score"]}
    assert [curve[s]["count_abs_error_share"] for s in (0.1, 0.3, 0.35, 0.9)] == [0.5, 0, 0.5, 0.5]
    assert curve[0.3]["exact_share"] == 1.0 and curve[0.9]["exact_share"] == 0.0
    # Under the score the photos' boxes were kept down to, nothing would be right: left out.
    floored = score_curve(photos[1:], floor=0.3)
    assert [row["score"] for row in floored][:2] == [0.3, 0.35]
    alone = summarise([photos[2]], with_boxes=True)
    assert alone["count_abs_error_share"] is None and alone["exact_share"] is None
    assert alone["own_box_recall"] is None and alone["precision"] is None
    assert BOX_KEYS.isdisjoint(summarise(photos, with_boxes=False))


def test_labels_match_by_path_or_by_an_unambiguous_file_name(tmp_path: Path) -> None:
    photos = ["carts/x.jpg", "carts/y.jpg", "toys/y.jpg", "z.png"]
    labels = {"carts/x.jpg": 1, "toys/y.jpg": 2, "other/z.png": 3}
    assert match_to_photos(labels, photos, "counts", tmp_path) == {
        "carts/x.jpg": 1,
        "toys/y.jpg": 2,
        "z.png": 3,
    }
    # A bare name two photos share matches neither, and is named as missing.
    with pytest.raises(ValueError, match=r"not found under the images folder: y\.jpg"):
        match_to_photos({"y.jpg": 1}, photos, "counts", tmp_path)


# --- the photo in the lane's frame ----------------------------------------------------------


@pytest.mark.parametrize(
    ("height", "width", "scale", "pad"),
    [
        (1280, 960, 0.375, (140, 0)),  # portrait phone photo: fits the frame's height
        (1080, 1920, 1 / 3, (0, 60)),  # landscape 16:9: fits the width, bars above and below
        (240, 320, 2.0, (0, 0)),  # small 4:3: grown to fill the frame, no further
    ],
)
def test_fit_to_lane_frame_and_back(
    height: int, width: int, scale: float, pad: tuple[int, int]
) -> None:
    photo = np.full((height, width, 3), 200, np.uint8)
    frame, fit = fit_to_lane_frame(photo)
    assert frame.shape == (480, 640, 3)
    assert (fit.pad_x, fit.pad_y) == pad
    assert fit.scale_x == pytest.approx(scale, abs=1e-3)
    assert fit.scale_y == pytest.approx(scale, abs=1e-3)
    if pad != (0, 0):  # the bars are the detector's grey, the photo is the photo's colour
        assert (frame[0, 0] == PAD_VALUE).all() and (frame[-1, -1] == PAD_VALUE).all()
    assert (frame[240, 320] == 200).all()
    boxes = _boxes(
        (0, 0, width, height), (10.5, 20, 300, 400), (width - 50, height - 60, width, height)
    )
    in_frame = fit.to_frame(boxes)
    # The whole photo is exactly the frame minus its bars.
    assert in_frame[0].tolist() == pytest.approx([pad[0], pad[1], 640 - pad[0], 480 - pad[1]])
    np.testing.assert_allclose(fit.to_photo(in_frame), boxes, atol=1e-9)


# --- the CLI end to end on simulator frames saved as photos ---------------------------------


def _simulated_photos(root: Path) -> tuple[dict[str, list[list[float]]], dict[str, int]]:
    """Three simulator frames written as photos of other shapes and sizes (one 1:1, one
    scaled 2x, one turned to portrait and scaled 2x), and their product boxes in those pixels."""
    from simulator.datasets import MIN_VISIBLE, snapshot
    from simulator.scenario import LaneLayout
    from simulator.scene import Look, SceneRenderer
    from simulator.world import World

    world = World.from_catalog()
    rng = Random(7)
    boxes: dict[str, list[list[float]]] = {}
    for i, name in enumerate(("lane/as-is.jpg", "lane/twice.png", "phone/portrait.jpg")):
        scene = snapshot(world, rng, world.known, LaneLayout(), 1, seed=i)
        frame, truth = SceneRenderer(scene, world, Look.random(rng)).render(5)
        products = np.array(
            [[b.x1, b.y1, b.x2, b.y2] for b in truth if b.cls == 0 and b.visible >= MIN_VISIBLE],
            np.float64,
        ).reshape(-1, 4)
        if name.startswith("phone"):  # turned a quarter clockwise: (x, y) -> (479 - y, x)
            frame = cv2.rotate(frame, cv2.ROTATE_90_CLOCKWISE)
            products = np.stack(
                [480 - products[:, 3], products[:, 0], 480 - products[:, 1], products[:, 2]], 1
            )
        if i > 0:
            frame = cv2.resize(frame, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
            products *= 2
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / name), frame)
        boxes[name] = products.tolist()
    return boxes, {name: len(b) for name, b in boxes.items()}


def _write_counts(path: Path, rows: dict[str, int]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "count", "difficulty", "note"])
        writer.writerows([file, count, "clear", ""] for file, count in rows.items())
    return path


def test_eval_scenes_cli_on_simulator_frames(tmp_path: Path) -> None:
    images = tmp_path / "photos"
    boxes, counts = _simulated_photos(images)
    assert all(counts.values()) and sum(counts.values()) >= 6
    (images / "notes.txt").write_text("not a photo")
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps({Path(k).name: v for k, v in boxes.items()}))  # bare names
    counted = {k: v for k, v in counts.items() if k != "lane/twice.png"}
    counts_file = _write_counts(tmp_path / "counts.csv", counted)
    overlays = tmp_path / "overlays"

    done = _scenes(
        "--images", str(images), "--counts", str(counts_file), "--boxes", str(boxes_file),
        "--overlays", str(overlays), "--precision", "int8",
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    result: dict[str, Any] = json.loads(done.stdout)
    for section in (result, result["low_score"], result["by_folder"]["lane"]["low_score"]):
        assert not (METRIC_KEYS | BOX_KEYS) - set(section)
    assert result["bundle"].startswith("bootstrap")
    assert (result["model"], result["size"], result["precision_mode"]) == (
        "detector-320-int8.onnx",
        320,
        "int8",
    )
    assert (result["new_track_score"], result["low_score_threshold"]) == (0.5, 0.1)
    assert result["photos"] == 3 and result["counted_photos"] == 2
    assert result["products"] == sum(counted.values())
    # The detector's count at a range of scores: at the low score it is the count above (at
    # the new-track score too without the verifier: the real-photo test below).
    curve = {row["score"]: row for row in result["by_score"]}
    assert list(curve) == [round(0.1 + 0.05 * i, 2) for i in range(17)]
    assert curve[0.1]["count_abs_error_share"] == result["low_score"]["count_abs_error_share"]
    assert curve[0.1]["exact_share"] == result["low_score"]["exact_share"]
    assert result["verifier"]["model"] == VERIFIER_FILE
    assert "by_score" in result["by_folder"]["phone"]
    assert set(result["by_folder"]) == {"lane", "phone"}
    assert result["by_folder"]["phone"]["products"] == counts["phone/portrait.jpg"]
    rows = {row["file"]: row for row in result["per_photo"]}
    assert set(rows) == set(counts)
    assert rows["lane/twice.png"]["count"] is None
    assert rows["lane/twice.png"]["boxes"] == counts["lane/twice.png"]
    for row in rows.values():
        assert row["found_low"] >= row["found"] >= 0
        assert {"own", "merged", "own_low", "merged_low"} <= set(row)
    # The detector was trained on such frames: most products get their own box, which they
    # can only if its boxes came back into each photo's own pixels, portrait and scaled ones too.
    assert result["low_score"]["own_box_recall"] >= 0.5
    assert rows["phone/portrait.jpg"]["own_low"] >= 1 and rows["lane/twice.png"]["own_low"] >= 1
    written = sorted(p.name for p in overlays.iterdir())
    assert written == ["lane__as-is.jpg", "lane__twice.png", "phone__portrait.jpg"]
    overlay = cv2.imread(str(overlays / "phone__portrait.jpg"))
    assert overlay is not None and overlay.shape == (480, 640, 3)
    assert "| all (3 photos" in done.stderr  # the markdown rows

    # Boxes alone: each photo's count is its number of boxes. Overlays written inside
    # --images are not taken for photos when the same command runs again.
    for _run in range(2):
        again = _scenes(
            "--images", str(images), "--boxes", str(boxes_file), "--overlays", str(images / "ov")
        )  # fmt: skip
        assert again.exit_code == 0, again.output
        result = json.loads(again.stdout)
        assert result["photos"] == 3 and result["products"] == sum(counts.values())
    assert len(list((images / "ov").iterdir())) == 3
    assert result["model"] == "detector-320-fp32.onnx"  # the lane's own pick


def test_eval_scenes_refuses_bad_input_naming_it(tmp_path: Path) -> None:
    images = tmp_path / "photos"
    (images / "carts").mkdir(parents=True)
    cv2.imwrite(str(images / "carts" / "a.jpg"), np.full((96, 128, 3), 90, np.uint8))
    counts = _write_counts(tmp_path / "counts.csv", {"carts/a.jpg": 2, "carts/gone.jpg": 3})
    done = _scenes("--images", str(images), "--counts", str(counts))
    assert done.exit_code != 0 and "carts/gone.jpg" in done.stderr

    broken = tmp_path / "broken.json"
    broken.write_text('{"a.jpg": [[0, 0, 10, 10]')
    done = _scenes("--images", str(images), "--boxes", str(broken))
    assert done.exit_code != 0 and "broken.json" in done.stderr and "cannot read" in done.stderr
    empty = tmp_path / "empty.json"
    empty.write_text('{"a.jpg": [[0, 0, 10, 10], [30, 5, 20, 15]]}')
    done = _scenes("--images", str(images), "--boxes", str(empty))
    assert done.exit_code != 0 and "box 1" in done.stderr and "x2 > x1" in done.stderr

    bad_count = tmp_path / "bad.csv"
    bad_count.write_text("file,count\ncarts/a.jpg,two\n")
    done = _scenes("--images", str(images), "--counts", str(bad_count))
    assert done.exit_code != 0 and "line 2" in done.stderr

    done = _scenes("--images", str(images), "--size", "416", "--precision", "fp32")
    assert done.exit_code != 0 and "detector-416-int8.onnx" in done.stderr

    (images / "carts" / "torn.png").write_bytes(b"\x89PNG not really")
    done = _scenes("--images", str(images))
    assert done.exit_code != 0 and "torn.png" in done.stderr

    nothing = tmp_path / "nothing"
    nothing.mkdir()
    done = _scenes("--images", str(nothing))
    assert done.exit_code != 0 and "no .jpg" in done.stderr


def test_the_eval_never_imports_torch() -> None:
    code = (
        "import sys, harness.cli, harness.evals.scenes, checkout_node.model_bundle; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert done.returncode == 0, done.stderr


# --- the shipped bundle on real photos ------------------------------------------------------


def test_eval_scenes_of_the_shipped_bundle_on_real_photos(
    real_scenes: Path, tmp_path: Path
) -> None:
    with (real_scenes / "counts.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = [
        next(r for r in rows if r["file"].startswith(f"{folder}/")) for folder in ("carts", "toys")
    ]
    chosen.append(next(r for r in reversed(rows) if r["file"].startswith("carts/")))
    for row in chosen:
        (tmp_path / "photos" / row["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(real_scenes / row["file"], tmp_path / "photos" / row["file"])
    counts = _write_counts(tmp_path / "counts.csv", {r["file"]: int(r["count"]) for r in chosen})
    done = _scenes("--images", str(tmp_path / "photos"), "--counts", str(counts))
    assert done.exit_code == 0, done.output
    result = json.loads(done.stdout)
    assert not METRIC_KEYS - set(result) and not METRIC_KEYS - set(result["low_score"])
    assert result["photos"] == 3 and result["products"] == sum(int(r["count"]) for r in chosen)
    assert set(result["by_folder"]) == {"carts", "toys"}
    for row in result["per_photo"]:
        assert row["found_low"] >= row["found"] >= 0 and row["count"] >= 1
    assert result["count_abs_error_share"] >= 0 and 0 <= result["exact_share"] <= 1
    # The lane's second look: shown every box from the verify score, it refuses some of these
    # photos' boxes (a cart's wire grid, the shelves behind it) and backs some unsure ones.
    assert result["verifier"]["verify_score"] == 0.3
    assert result["verifier"]["refused"] == sum(r["refused"] for r in result["per_photo"]) > 0
    alone = _scenes("--images", str(tmp_path / "photos"), "--counts", str(counts), "--no-verifier")
    assert alone.exit_code == 0, alone.output
    detector_only = json.loads(alone.stdout)
    assert detector_only["verifier"] is None
    assert {r["refused"] for r in detector_only["per_photo"]} == {None}
    assert (detector_only["birth_rule"], result["birth_rule"]) == ("score", "score+verifier")
    assert "| 0.5+verifier |" in done.stderr and "| 0.5+verifier |" not in alone.stderr
    at_half = next(row for row in detector_only["by_score"] if row["score"] == 0.5)
    assert at_half["count_abs_error_share"] == detector_only["count_abs_error_share"]
    assert detector_only["by_score"] == result["by_score"]  # the detector's own curve
    assert [r["found"] for r in detector_only["per_photo"]] != [
        r["found"] for r in result["per_photo"]
    ]
