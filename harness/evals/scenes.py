"""`laneguard eval scenes`: the lane's detector on real still photos of carts and piles,
scored against a person's item counts (and boxes, where someone drew them).

Why stills: the simulator's figures say how well the detector learned the simulator; a real
cart or pile says whether it learned what a product is. Each photo goes through exactly what a
lane frame goes through: it is fitted into the lane camera's frame (aspect kept, grey padding,
as a camera of that resolution would have seen it), the bundle's detector runs on that frame
built as `LanePipeline` builds it, and its product boxes are counted at the two scores the
tracker acts on: `new_track_score` (a box this confident starts a track, so it is what a lane
would count) and `low_score` (the least a box may score and still keep an existing track).
When the bundle carries a verifier, the count at the new-track score is the lane's births:
every product box at or above the tracker's ``verify_score`` is shown to the verifier, as a lane
shows it within a few frames of a still scene (`checkout_node.vision.tracker.births`); the
``by_score`` curve stays the detector's own.

Count metrics are totals over the photos that have a count: ``count_abs_error_share`` is
sum |found - count| / sum count, ``exact_share`` the share of counted photos found exactly.
With boxes (photo pixels), each detection is mapped back into the photo and scored:
``own_box_recall`` is the share of true products that get a detection box of their own
(one-to-one, IoU >= 0.5, greedy by IoU as the lane's tracker pairs), ``merged_box_share`` the
share of detection boxes covering two or more true products (a product is covered when at
least half of its box lies inside the detection), and ``precision`` matched detections over all
detections. A ratio with nothing to divide by is null. Its command line and JSON keys are a
contract: others run it on photos we do not have.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import cv2
import numpy as np

from checkout_node.service import DEFAULT_FRAME
from checkout_node.vision.detector import Detections, inside_share
from checkout_node.vision.detectors import FrameDetector, make_detector
from checkout_node.vision.pipeline import PRODUCT, lane_detector_config
from checkout_node.vision.tracker import (
    NOT_PRODUCT_VERDICT,
    TrackerConfig,
    births,
    greedy_assignment,
    iou_matrix,
)
from checkout_node.vision.verifier import BirthVerifier, ProductVerifier, VerifierConfig
from laneguard.detection import PAD_VALUE
from product_db.errors import LaneGuardError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
MATCH_IOU = 0.5  # a detection is a product's own box at this IoU or more
COVERED_SHARE = 0.5  # a product is covered by a box holding this much of its own box's area
ROOT_FOLDER = "."  # by_folder key of photos lying directly in --images
CURVE_SCORES = tuple(round(0.1 + 0.05 * i, 2) for i in range(17))  # 0.1 ... 0.9

# Overlay colours (BGR): what a lane would count, what only the low score adds, the truth.
NEW_TRACK_COLOUR = (60, 220, 60)
LOW_ONLY_COLOUR = (0, 165, 255)
TRUTH_COLOUR = (255, 80, 200)

T = TypeVar("T")


class ScenesError(LaneGuardError, ValueError):
    """Photos, counts or boxes the evaluation cannot use; the message names the bad one."""


# --- the lane's frame -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameFit:
    """How a photo was placed in the lane's frame: frame = photo * scale + pad, per axis (the
    two scales differ only by the rounding of the resized photo's size)."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 in photo pixels -> the same boxes in frame pixels."""
        scale = np.array([self.scale_x, self.scale_y] * 2, np.float64)
        pad = np.array([self.pad_x, self.pad_y] * 2, np.float64)
        return np.asarray(boxes, np.float64).reshape(-1, 4) * scale + pad

    def to_photo(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) boxes in frame pixels -> photo pixels (the inverse of ``to_frame``)."""
        scale = np.array([self.scale_x, self.scale_y] * 2, np.float64)
        pad = np.array([self.pad_x, self.pad_y] * 2, np.float64)
        return (np.asarray(boxes, np.float64).reshape(-1, 4) - pad) / scale


def fit_to_lane_frame(
    photo: np.ndarray, frame_size: tuple[int, int] = DEFAULT_FRAME
) -> tuple[np.ndarray, FrameFit]:
    """``photo`` (H, W, 3) scaled, aspect kept, to just fit a ``frame_size`` (width, height)
    frame and centred on the detector's grey padding: the frame a lane camera of that
    resolution would have given the detector. A photo is scaled up only as far as it fits."""
    height, width = photo.shape[:2]
    frame_w, frame_h = frame_size
    scale = min(frame_w / width, frame_h / height)
    new_w = max(1, min(frame_w, round(width * scale)))
    new_h = max(1, min(frame_h, round(height * scale)))
    # Bilinear, as the detector's own letterbox resizes: it reproduces the published baseline
    # (data/real-scenes/README.md) exactly; area averaging would count about 1% differently.
    resized = cv2.resize(photo, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    pad_x, pad_y = (frame_w - new_w) // 2, (frame_h - new_h) // 2
    frame = np.full((frame_h, frame_w, 3), PAD_VALUE, np.uint8)
    frame[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return frame, FrameFit(new_w / width, new_h / height, pad_x, pad_y)


# --- box scores -----------------------------------------------------------------------------


def own_box_pairs(
    detections: np.ndarray, truth: np.ndarray, minimum_iou: float = MATCH_IOU
) -> list[tuple[int, int]]:
    """One-to-one (detection, truth) pairs at IoU >= ``minimum_iou``, best overlap first."""
    if len(detections) == 0 or len(truth) == 0:
        return []
    return greedy_assignment(iou_matrix(detections, truth), minimum_iou)


def merged_mask(
    detections: np.ndarray, truth: np.ndarray, covered: float = COVERED_SHARE
) -> np.ndarray:
    """(N,) bool: the detection boxes that cover two or more true products, a product being
    covered when at least ``covered`` of its box's area lies inside the detection box. Such a
    box is one track, and so one count, for several items."""
    if len(detections) == 0 or len(truth) == 0:
        return np.zeros(len(detections), bool)
    inside = inside_share(np.asarray(truth, np.float64), np.asarray(detections, np.float64))
    return np.asarray((inside >= covered).sum(axis=0) >= 2)


@dataclass(frozen=True, slots=True)
class BoxScore:
    """One photo's detections against its true boxes, at one score."""

    truths: int
    detections: int
    own: int  # true products with a detection of their own (= matched detections)
    merged: int  # detections covering two or more true products


def score_boxes(detections: np.ndarray, truth: np.ndarray) -> BoxScore:
    """Score ``detections`` (N, 4) against ``truth`` (M, 4), both x1, y1, x2, y2 in the same
    pixels."""
    return BoxScore(
        truths=len(truth),
        detections=len(detections),
        own=len(own_box_pairs(detections, truth)),
        merged=int(merged_mask(detections, truth).sum()),
    )


# --- per photo and totals -------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoResult:
    """What the detector found on one photo at the new-track score and at the low score."""

    file: str  # relative to --images, posix
    count: int | None  # the person's count; None: listed, not scored for count
    found: int
    found_low: int
    boxes: BoxScore | None = None
    boxes_low: BoxScore | None = None
    # scores of the product boxes at or above the low score: the count at any score between
    product_scores: tuple[float, ...] = ()
    refused: int | None = None  # candidates the verifier said are not products (None: no verifier)

    @property
    def folder(self) -> str:
        parts = PurePosixPath(self.file).parts
        return parts[0] if len(parts) > 1 else ROOT_FOLDER

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "file": self.file,
            "count": self.count,
            "found": self.found,
            "found_low": self.found_low,
            "refused": self.refused,
        }
        if self.boxes is not None and self.boxes_low is not None:
            row |= {
                "boxes": self.boxes.truths,
                "own": self.boxes.own,
                "merged": self.boxes.merged,
                "own_low": self.boxes_low.own,
                "merged_low": self.boxes_low.merged,
            }
        return row


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def metrics(photos: list[PhotoResult], low: bool, with_boxes: bool) -> dict[str, Any]:
    """Totals over ``photos`` at one score: sums first, then one ratio (a photo of 30 items
    weighs more than a photo of 3, as its items do at the till). The signed share tells
    over-counting (> 0) from under-counting, which the absolute one cannot."""
    found = {p.file: p.found_low if low else p.found for p in photos}
    counted = [(found[p.file], p.count) for p in photos if p.count is not None]
    products = sum(count for _, count in counted)
    exact = sum(seen == count for seen, count in counted)
    result: dict[str, Any] = {
        "photos": len(photos),
        "counted_photos": len(counted),
        "products": products,
        "found": sum(found.values()),
        "count_abs_error_share": _share(sum(abs(s - c) for s, c in counted), products),
        "count_signed_error_share": _share(sum(s - c for s, c in counted), products),
        "exact_share": _share(exact, len(counted)),
        "exact_photos": exact,
    }
    if with_boxes:
        scores = [s for p in photos if (s := p.boxes_low if low else p.boxes) is not None]
        truths = sum(s.truths for s in scores)
        detections = sum(s.detections for s in scores)
        own = sum(s.own for s in scores)
        result |= {
            "boxed_photos": len(scores),
            "own_box_recall": _share(own, truths),
            "merged_box_share": _share(sum(s.merged for s in scores), detections),
            "precision": _share(own, detections),
        }
    return result


def score_curve(
    photos: list[PhotoResult],
    scores: Sequence[float] = CURVE_SCORES,
    floor: float = TrackerConfig().low_score,
) -> list[dict[str, Any]]:
    """The count at each of ``scores``, as ``metrics`` counts at the new-track score; scores
    under ``floor`` (the low score the photos' ``product_scores`` were kept down to) are left
    out rather than counted short. One camera's best score is not another's (on the
    real-scenes photos the toys' count error is lowest near 0.25, the carts' at 0.5 or above),
    which is what a per-camera new-track score would be chosen from; it is reported, never
    chosen here."""
    counted = [p for p in photos if p.count is not None]
    products = sum(p.count for p in counted if p.count is not None)
    curve = []
    for score in (s for s in scores if s >= floor):
        errors = [
            abs(sum(s >= score for s in p.product_scores) - p.count)
            for p in counted
            if p.count is not None
        ]
        curve.append(
            {
                "score": score,
                "count_abs_error_share": _share(sum(errors), products),
                "exact_share": _share(sum(e == 0 for e in errors), len(errors)),
            }
        )
    return curve


def summarise(photos: list[PhotoResult], with_boxes: bool) -> dict[str, Any]:
    """The metrics at the new-track score, with the same keys under ``low_score``, and the
    count at a range of scores under ``by_score``."""
    return metrics(photos, low=False, with_boxes=with_boxes) | {
        "low_score": metrics(photos, low=True, with_boxes=with_boxes),
        "by_score": score_curve(photos),
    }


# --- inputs ---------------------------------------------------------------------------------


def find_photos(images: Path, exclude: Path | None = None) -> dict[str, Path]:
    """Every .jpg/.jpeg/.png under ``images`` (recursively) by its posix path relative to it,
    sorted; files under ``exclude`` (overlays written inside --images) are left out."""
    if not images.is_dir():
        raise ScenesError(f"{images}: not a folder of photos")
    skip = exclude.resolve() if exclude is not None else None
    photos = {}
    for path in sorted(images.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        photos[path.relative_to(images).as_posix()] = path
    if not photos:
        raise ScenesError(f"{images}: no .jpg, .jpeg or .png photos in it or below it")
    return photos


def read_counts(path: Path) -> dict[str, int]:
    """``file,count,...`` rows -> {file: count}; any other column is ignored."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle))
            columns = set(rows[0]) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScenesError(f"{path}: cannot read the counts ({exc})") from None
    if not rows or not {"file", "count"} <= columns:
        raise ScenesError(f"{path}: expected a CSV with a header 'file,count,...' and rows")
    counts: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        file, count = (row.get("file") or "").strip(), (row.get("count") or "").strip()
        if not file:
            raise ScenesError(f"{path}, line {line}: no file name")
        if not count.isdigit():
            raise ScenesError(
                f"{path}, line {line}: count {count!r} of {file} is not a whole number"
            )
        if file in counts:
            raise ScenesError(f"{path}, line {line}: {file} is counted twice")
        counts[file] = int(count)
    return counts


def read_boxes(path: Path) -> dict[str, np.ndarray]:
    """``{file: [[x1, y1, x2, y2], ...]}`` in the photo's own pixels -> {file: (N, 4) array}."""
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ScenesError(f"{path}: cannot read the boxes ({exc})") from None
    if not isinstance(data, dict):
        raise ScenesError(f"{path}: expected a JSON object {{file: [[x1, y1, x2, y2], ...]}}")
    boxes: dict[str, np.ndarray] = {}
    for file, entries in data.items():
        if not isinstance(entries, list):
            raise ScenesError(f"{path}: {file}: expected a list of [x1, y1, x2, y2] boxes")
        for i, box in enumerate(entries):
            if (
                not isinstance(box, list)
                or len(box) != 4
                or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                    for v in box
                )
            ):
                raise ScenesError(f"{path}: {file}, box {i}: expected [x1, y1, x2, y2], got {box}")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise ScenesError(
                    f"{path}: {file}, box {i}: {box} is empty (needs x2 > x1 and y2 > y1)"
                )
        boxes[file] = np.asarray(entries, np.float64).reshape(-1, 4)
    return boxes


def match_to_photos(
    labels: Mapping[str, T], photos: Iterable[str], what: str, source: Path
) -> dict[str, T]:
    """``labels`` keyed by photo: by the relative path, or else by the bare file name where
    exactly one photo and one label have it (counts.csv names `carts/x.jpg`; a run on the carts
    folder alone calls that photo `x.jpg`). A label naming no photo is an error: a typo must not
    silently shrink the scored set."""
    keys = set(photos)
    by_name: dict[str, list[str]] = {}
    for key in sorted(keys):
        by_name.setdefault(PurePosixPath(key).name, []).append(key)
    names = Counter(PurePosixPath(label.strip().replace("\\", "/")).name for label in labels)
    matched: dict[str, T] = {}
    missing: list[str] = []
    for label, value in labels.items():
        key = PurePosixPath(label.strip().replace("\\", "/")).as_posix()
        if key not in keys:
            candidates = by_name.get(PurePosixPath(key).name, [])
            if len(candidates) != 1 or names[PurePosixPath(key).name] != 1:
                missing.append(label)
                continue
            key = candidates[0]
        if key in matched:
            raise ScenesError(f"{source}: two {what} entries name the photo {key}")
        matched[key] = value
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ScenesError(f"{source}: {what} for photos not found under the images folder: {shown}")
    return matched


# --- running the lane's detector ------------------------------------------------------------


def lane_detector(model: Path, threads: int) -> FrameDetector:
    """The detector exactly as `LanePipeline` builds it (its default backend)."""
    return make_detector(model, lane_detector_config(threads))


def product_boxes(
    detections: Detections, minimum_score: float, below: float = math.inf
) -> np.ndarray:
    """(N, 4) frame boxes of the products scoring ``minimum_score`` or more (and under
    ``below``)."""
    scores = detections.scores
    keep = (detections.classes == PRODUCT) & (scores >= minimum_score) & (scores < below)
    return np.asarray(detections.boxes[keep], np.float64)


def lane_births(
    frame: np.ndarray,
    detections: Detections,
    tracker: TrackerConfig,
    look: BirthVerifier | None,
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(frame boxes of the products a lane would start tracks for on this still frame, the
    product boxes it would not, how many candidates the verifier refused: None without one),
    by the tracker's own birth rule. ``look`` should be fresh for each photo and without a
    per-frame limit: a lane looking at a still scene gets to every candidate within a few
    frames, each waiting its turn."""
    products = detections.of_classes(PRODUCT)
    refused = None if look is None else 0

    def verify(candidates: np.ndarray) -> np.ndarray:
        nonlocal refused
        assert look is not None
        verdicts = look.judge(frame, products.boxes[candidates], 0)
        refused = int((verdicts == NOT_PRODUCT_VERDICT).sum())
        return verdicts

    everyone = np.arange(len(products), dtype=np.int64)
    born = births(everyone, products.scores, tracker, verify if look is not None else None)
    boxes = np.asarray(products.boxes, np.float64).reshape(-1, 4)
    rest = np.ones(len(boxes), bool)
    rest[born] = False
    return boxes[born], boxes[rest & (products.scores >= tracker.low_score)], refused


def _product_scores(detections: Detections, minimum_score: float) -> list[float]:
    keep = (detections.classes == PRODUCT) & (detections.scores >= minimum_score)
    return [float(score) for score in detections.scores[keep]]


def in_photo(frame_boxes: np.ndarray, fit: FrameFit, shape: tuple[int, ...]) -> np.ndarray:
    """Detections mapped back from the lane's frame into the photo's pixels, inside it."""
    height, width = shape[:2]
    return np.clip(fit.to_photo(frame_boxes), 0, np.array([width, height, width, height]))


def draw_overlay(
    frame: np.ndarray,
    counted: np.ndarray,
    low_only: np.ndarray,
    truth: np.ndarray | None,
    caption: str,
) -> np.ndarray:
    """The lane's frame with what it would count (green), what only the low score adds
    (orange) and the true boxes (pink), all in frame pixels, and a caption."""
    out = frame.copy()
    layers = [(low_only, LOW_ONLY_COLOUR, 1), (counted, NEW_TRACK_COLOUR, 2)]
    if truth is not None:
        layers.insert(0, (truth, TRUTH_COLOUR, 1))
    for boxes, colour, thickness in layers:
        for x1, y1, x2, y2 in np.round(boxes).astype(int).tolist():
            cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness, cv2.LINE_AA)
    cv2.rectangle(out, (0, 0), (out.shape[1], 24), (0, 0, 0), -1)
    cv2.putText(
        out, caption, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    return out


def overlay_name(key: str) -> str:
    """The overlay's file name: the photo's relative path, folders joined by '__'."""
    return key.replace("/", "__")


def evaluate_scenes(
    model: Path,
    images: Path,
    counts: Path | None = None,
    boxes: Path | None = None,
    overlays: Path | None = None,
    threads: int = 2,
    progress: Callable[[str], None] | None = None,
    verifier: Path | None = None,
) -> dict[str, Any]:
    """Run the detector ``model`` (and the birth ``verifier``, when given) on every photo under
    ``images`` as a lane would and score it against ``counts`` (CSV) and ``boxes`` (JSON);
    JSON-able result. Bad input raises ScenesError naming the photo, row or box."""
    photos = find_photos(images, exclude=overlays)
    true_boxes = match_to_photos(read_boxes(boxes), photos, "boxes", boxes) if boxes else {}
    if counts is not None:
        true_counts = match_to_photos(read_counts(counts), photos, "counts", counts)
    else:
        true_counts = {key: len(b) for key, b in true_boxes.items()}
    if overlays is not None:
        overlays.mkdir(parents=True, exist_ok=True)
    tracker = TrackerConfig()
    detector = lane_detector(model, threads)
    session = ProductVerifier(verifier, threads) if verifier is not None else None
    # Every candidate of a photo looked at (see lane_births); the rest as the lane has it.
    look_config = replace(VerifierConfig(), per_frame=1_000_000)
    results: list[PhotoResult] = []
    for index, (key, path) in enumerate(photos.items()):
        photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if photo is None:
            raise ScenesError(f"{path}: cannot be read as an image")
        frame, fit = fit_to_lane_frame(photo)
        detections = detector.detect(frame)
        look = None if session is None else BirthVerifier(session, look_config)
        counted, low_only, refused = lane_births(frame, detections, tracker, look)
        low = product_boxes(detections, tracker.low_score)
        truth = true_boxes.get(key)
        score = score_low = None
        if truth is not None:
            score = score_boxes(in_photo(counted, fit, photo.shape), truth)
            score_low = score_boxes(in_photo(low, fit, photo.shape), truth)
        result = PhotoResult(
            key,
            true_counts.get(key),
            len(counted),
            len(low),
            score,
            score_low,
            tuple(_product_scores(detections, tracker.low_score)),
            refused,
        )
        results.append(result)
        if overlays is not None:
            caption = (
                f"found {result.found} (low score {result.found_low}) / "
                f"count {'-' if result.count is None else result.count}"
            )
            picture = draw_overlay(
                frame, counted, low_only, None if truth is None else fit.to_frame(truth), caption
            )
            target = overlays / overlay_name(key)
            if not cv2.imwrite(str(target), picture):
                raise ScenesError(f"{target}: cannot write the overlay")
        if progress is not None and (index + 1) % 25 == 0:
            progress(f"{index + 1}/{len(photos)} photos")
    with_boxes = boxes is not None
    folders: dict[str, list[PhotoResult]] = {}
    for result in results:
        folders.setdefault(result.folder, []).append(result)
    return {
        "frame": list(DEFAULT_FRAME),
        # What the count at the new-track score is: the detector's score alone, or the lane's
        # rule with the verifier (then the by_score curve at 0.5 is the detector's alone).
        "birth_rule": "score" if verifier is None else "score+verifier",
        "verifier": None
        if verifier is None
        else {
            "model": verifier.name,
            "verify_score": tracker.verify_score,
            "veto_share": look_config.veto_share,
            "refused": sum(r.refused or 0 for r in results),
        },
        "new_track_score": tracker.new_track_score,
        "low_score_threshold": tracker.low_score,
        **summarise(results, with_boxes),
        "by_folder": {
            name: summarise(group, with_boxes) for name, group in sorted(folders.items())
        },
        "per_photo": [r.to_json() for r in results],
    }


def scenes_table(result: dict[str, Any]) -> list[str]:
    """Markdown rows `laneguard eval scenes` prints on stderr beside its JSON: one row per set
    (all photos, then each folder) and score."""

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    boxes = "own_box_recall" in result
    rows = [
        "| set | score | absolute count error / products | photos counted exactly "
        "| own-box recall | merged boxes | precision |",
        "|---|---|---|---|---|---|---|",
    ]
    sets = [("all", result), *result["by_folder"].items()]
    for name, totals in sets:
        births = "+verifier" if result.get("birth_rule") == "score+verifier" else ""
        for score, run in (
            (f"{result['new_track_score']}{births}", totals),
            (result["low_score_threshold"], totals["low_score"]),
        ):
            box_cells = (
                [
                    ratio(run["own_box_recall"]),
                    ratio(run["merged_box_share"]),
                    ratio(run["precision"]),
                ]
                if boxes
                else ["-", "-", "-"]
            )
            rows.append(
                f"| {name} ({run['photos']} photos, {run['products']} products) | {score} | "
                f"{ratio(run['count_abs_error_share'])} | "
                f"{run['exact_photos']} / {run['counted_photos']} | " + " | ".join(box_cells) + " |"
            )
    return rows
