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

from checkout_node.models import LaneModels
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import CountedItem, LanePipeline
from simulator.scenario import Scenario, build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World

MATCH_WINDOW_S = 0.8


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
    for index in range(scenario.n_frames):
        frame, _ = renderer.render(index)
        counted.extend(pipeline.process(frame, index / scenario.fps).counted)
    result = match_counts(scenario, counted)
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
