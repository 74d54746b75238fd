"""Simulated transactions through the real lane pipeline, scored against ground truth.

Frames are rendered in memory and fed to checkout_node's LanePipeline exactly as a camera's
would be. Counted items are matched to the true crossings by time (and reported with their
identities), so double counts, missed items and wrong identities are all visible.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from checkout_node.model_bundle import LaneModels
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.detector import Detections, inside_share
from checkout_node.vision.pipeline import NMS_GROUPS, PRODUCT, CountedItem, LanePipeline
from checkout_node.vision.tracker import iou_matrix
from simulator.scenario import Actor, Scenario, build_scenario
from simulator.scene import Box, SceneRenderer
from simulator.world import World

MATCH_WINDOW_S = 0.8
PAIR_MIN_VISIBLE = 0.3  # a riding item shows at least this share of itself in a judged frame
PAIR_BOX_IOU = 0.5  # a detection this close to the riding item's box is its own box
PAIR_COVER = 0.8  # a detection holding this much of both items' boxes is one box around both


@dataclass
class RidingPairFrames:
    """What the detector made of an item riding with another, frame by frame.

    Counting can only count what the detector boxes separately: a frame where one box is drawn
    around the pair is a frame where the riding item does not exist for the tracker.
    """

    frames: int = 0  # detected frames with the riding item and its carrier in view
    own_box: int = 0  # the riding item had a box of its own (not one holding its carrier)
    one_box_around_both: int = 0  # it was inside a box that also held its carrier

    def add(self, other: RidingPairFrames) -> None:
        self.frames += other.frames
        self.own_box += other.own_box
        self.one_box_around_both += other.one_box_around_both

    def to_json(self) -> dict[str, Any]:
        share = (lambda n: round(n / self.frames, 3)) if self.frames else (lambda n: None)
        return {
            "frames": self.frames,
            "riding_item_own_box": share(self.own_box),
            "one_box_around_both": share(self.one_box_around_both),
        }


def _box_array(box: Box) -> np.ndarray:
    return np.array([box.x1, box.y1, box.x2, box.y2], np.float32)


def judge_pair_frame(riding: Box, carrier: Box, detections: Detections) -> tuple[bool, bool]:
    """(the riding item has its own box, one box holds both) for one detected frame."""
    group = NMS_GROUPS[PRODUCT]
    objects = detections.of_classes(*(c for c, g in NMS_GROUPS.items() if g == group))
    if len(objects) == 0:
        return False, False
    pair = np.stack([_box_array(riding), _box_array(carrier)])
    iou = iou_matrix(pair[:1], objects.boxes)[0]
    both = (inside_share(pair, objects.boxes) >= PAIR_COVER).all(axis=0)
    # A box around both can overlap a large riding item enough to pass for its own: it is not.
    return bool(((iou >= PAIR_BOX_IOU) & ~both).any()), bool(both.any())


def riding_pairs(scenario: Scenario) -> dict[int, int]:
    """Riding item's actor id -> its carrier's (the product staged just before it)."""
    pairs = {}
    for actor in scenario.actors:
        if actor.behaviour == "stacked":
            carriers: list[Actor] = [
                a for a in scenario.actors if a.role == "product" and a.actor_id < actor.actor_id
            ]
            pairs[actor.actor_id] = max(carriers, key=lambda a: a.actor_id).actor_id
    return pairs


@dataclass
class TransactionResult:
    kind: str
    seed: int
    true_items: int
    counted: int
    missed: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    identity_correct: int = 0
    identity_checked: int = 0
    hidden_missed: int = 0
    riding: RidingPairFrames = field(default_factory=RidingPairFrames)
    frames: int = 0
    seconds: float = 0.0
    detector_seconds: float = 0.0
    detected_frames: int = 0

    @property
    def exact(self) -> bool:
        return not self.missed and not self.extra


def match_counts(scenario: Scenario, counted: list[CountedItem]) -> TransactionResult:
    """Pair counted items with true crossings (nearest in time within the window).

    Items riding under another are paired last: a stacked pair crosses together, and the one
    count the pair gets belongs to the item on top, so a missed count is the hidden item's.
    """
    result = TransactionResult(scenario.kind, scenario.seed, len(scenario.true_items), len(counted))
    truth = sorted(
        (a for a in scenario.items if a.crossed_at is not None),
        key=lambda a: (a.behaviour == "stacked", a.crossed_at or 0.0),
    )
    free = list(counted)
    for item in truth:
        crossed = item.crossed_at or 0.0
        candidates = [c for c in free if abs(c.crossed_s - crossed) <= MATCH_WINDOW_S]
        if not candidates:
            result.missed.append(
                {
                    "track_id": item.actor_id,
                    "code": item.code,
                    "crossed_s": round(crossed, 3),
                    "behaviour": item.behaviour,
                }
            )
            if item.behaviour == "stacked":
                result.hidden_missed += 1
            continue
        best = min(candidates, key=lambda c: abs(c.crossed_s - crossed))
        free.remove(best)
        if item.code not in scenario.new_products:
            result.identity_checked += 1
            result.identity_correct += int(best.code == item.code)
    result.extra = [
        {"track_id": c.track_id, "code": c.code, "crossed_s": round(c.crossed_s, 3)} for c in free
    ]
    return result


def run_transaction(
    scenario: Scenario,
    world: World,
    models: LaneModels,
    threads: int = 2,
    detect_interval: int = 1,
) -> TransactionResult:
    layout = scenario.layout
    pipeline = LanePipeline(
        models,
        LaneZones.standard(layout.width, layout.height),
        threads=threads,
        detect_interval=detect_interval,
    )
    counted: list[CountedItem] = []
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    pairs = riding_pairs(scenario)
    riding = RidingPairFrames()
    for index in range(scenario.n_frames):
        frame, boxes = renderer.render(index)
        before = pipeline.stats.detected_frames
        step = pipeline.process(frame, index / scenario.fps)
        counted.extend(step.counted)
        if pairs and pipeline.stats.detected_frames > before:
            by_id = {box.track_id: box for box in boxes}
            for riding_id, carrier_id in pairs.items():
                item, carrier = by_id.get(riding_id), by_id.get(carrier_id)
                if item is None or carrier is None or item.visible < PAIR_MIN_VISIBLE:
                    continue
                own, merged = judge_pair_frame(item, carrier, step.detections)
                riding.frames += 1
                riding.own_box += own
                riding.one_box_around_both += merged
    counted.extend(pipeline.flush())
    result = match_counts(scenario, counted)
    result.riding = riding
    result.frames = pipeline.stats.frames
    result.seconds = pipeline.stats.seconds
    result.detector_seconds = pipeline.stats.detector_seconds
    result.detected_frames = pipeline.stats.detected_frames
    return result


def evaluate_counting(
    models: LaneModels,
    transactions: int = 50,
    seed: int = 1000,
    fps: float = 30.0,
    kind: str = "mixed",
    produce_photos: Path | None = None,
    progress: Callable[[str], None] = print,
    detect_interval: int = 1,
) -> dict[str, Any]:
    """Counting accuracy over ``transactions`` simulated transactions of 5-40 items.

    Produce is drawn from the real photos' test split when ``produce_photos`` is given (what a
    lane would see), else with the simulator's drawn look.
    """
    world = World.from_catalog(produce_photos=produce_photos)
    results = []
    start = time.perf_counter()
    for i in range(transactions):
        scenario = build_scenario(kind, seed + i, world, fps=fps)
        result = run_transaction(scenario, world, models, detect_interval=detect_interval)
        results.append(result)
        progress(
            f"transaction {i + 1}/{transactions} ({kind} seed {seed + i}): "
            f"{result.true_items} true, {result.counted} counted, "
            f"{len(result.missed)} missed ({result.hidden_missed} hidden), "
            f"{len(result.extra)} extra"
        )
    true_total = sum(r.true_items for r in results)
    riding = RidingPairFrames()
    for r in results:
        riding.add(r.riding)
    hidden = sum(r.hidden_missed for r in results)
    missed = sum(len(r.missed) for r in results)
    checked = sum(r.identity_checked for r in results)
    frames = sum(r.frames for r in results)
    return {
        "transactions": transactions,
        "fps_of_video": fps,
        "detect_interval": detect_interval,
        "true_items": true_total,
        "counted": sum(r.counted for r in results),
        "missed": missed,
        "missed_visible": missed - hidden,
        "missed_hidden_under_other_items": hidden,
        "extra_counts": sum(len(r.extra) for r in results),
        "riding_pair_frames": riding.to_json(),
        "exact_transactions": sum(r.exact for r in results),
        "identity_top1": round(sum(r.identity_correct for r in results) / checked, 4)
        if checked
        else None,
        "pipeline_fps": round(frames / sum(r.seconds for r in results), 1) if frames else None,
        "produce": "real photos (test split)" if produce_photos else "drawn",
        "wall_seconds": round(time.perf_counter() - start, 1),
        "failures": [
            {"seed": r.seed, "missed": r.missed, "extra": r.extra} for r in results if not r.exact
        ][:20],
    }
