"""The gate between a fine-tuned candidate and production: same held-out data, both models.

Measured for each side with its own embedder, gallery and thresholds:
- ``harvest_top1``: identity of the held-out harvested crops (the newest transactions);
- ``replay_clean``: the held-out honest transactions replayed as a lane would judge them: a
  transaction is clean when no crop gets a trusted identity other than its scanned code (that
  would be a false switch alert on an honest customer);
- ``replay_recognised``: share of replayed crops trusted with their scanned code;
- ``known_top1``: identity of simulator crops of every catalog product (nothing forgotten);
- ``detector_mAP50``: the detector on the same simulator test scenes;
- ``store_frames_mAP50``: the detector on each lane's newest camera frames (trainer.store_frames),
  one check per lane;
- ``detector_boxes`` and ``store_frames_boxes``: the same images counted as a lane uses the
  detector (trainer.lane_boxes): own-box recall and precision at the tracker's new-track score.
  mAP50 alone let through a candidate that boxed fewer products at that score.
The candidate passes when no metric is worse than production's by more than the tolerance and
every product production did not know (``new_codes``) is identified at least
``new_product_min_top1`` of the time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from laneguard.bundle import Thresholds
from laneguard.embedding import Embedder
from laneguard.gallery import Gallery
from trainer.embedder import embed_paths
from trainer.evaluate import recognition_metrics
from trainer.harvest import HarvestDataset

HIGHER_IS_BETTER = (
    "harvest_top1",
    "replay_clean",
    "replay_recognised",
    "known_top1",
    "detector_mAP50",
)


BOX_MEASURES = ("own_box_recall", "precision")  # trainer.lane_boxes, at the new-track score


@dataclass
class DetectorScores:
    """A detector measured for the gate, on the simulator's test scenes and on each lane's
    held-out camera frames: mAP50, and own-box recall and precision at the lane's new-track
    score (``LaneBoxCount.summary()``). Per lane, so a candidate worse on any one camera is
    refused even when the store's other lanes got better."""

    scenes_mAP50: float | None = None
    scenes_boxes: dict[str, Any] = field(default_factory=dict)
    lanes_mAP50: dict[str, float] = field(default_factory=dict)
    lanes_boxes: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class GateSide:
    """One model set under test."""

    name: str
    embedder: Path
    gallery: Gallery
    thresholds: Thresholds
    detector: DetectorScores = field(default_factory=DetectorScores)


@dataclass(frozen=True)
class GatePolicy:
    tolerance: float = 0.01
    new_product_min_top1: float = 0.8
    # Box counts over a lane's few dozen held-out boxes move in steps of one box (0.02 of 50):
    # a measure may be worse by this many boxes, or by ``tolerance``, whichever is more.
    box_slack: int = 1


def _vectors(embedder: Embedder, folders: Mapping[str, Sequence[Path]]) -> dict[str, np.ndarray]:
    return {code: embed_paths(embedder, list(paths)) for code, paths in folders.items() if paths}


def measure(
    side: GateSide, harvest: HarvestDataset, known: dict[str, list[Path]]
) -> dict[str, Any]:
    embedder = Embedder(side.embedder)
    held_out = _vectors(
        embedder, {c: [x.image for x in crops] for c, crops in harvest.test.items()}
    )
    harvest_result = recognition_metrics(side.gallery, held_out)
    # The replay reads the same crops again, grouped by transaction: their vectors are reused.
    vector_of = {
        crop.sample_id: vector
        for code, crops in harvest.test.items()
        for crop, vector in zip(crops, held_out.get(code, []))
    }
    clean = recognised = crops_total = 0
    transactions = harvest.test_transactions()
    for crops in transactions.values():
        vectors = np.stack([vector_of[c.sample_id] for c in crops])
        best = [m[0] for m in side.gallery.identify(vectors, k=1)]
        trusted = [
            (crop.code, match)
            for crop, match in zip(crops, best)
            if match.score >= side.thresholds.t1
        ]
        clean += all(match.code == code for code, match in trusted)
        recognised += sum(match.code == code for code, match in trusted)
        crops_total += len(crops)
    known_result = recognition_metrics(side.gallery, _vectors(embedder, known))
    return {
        "harvest_top1": harvest_result["top1"],
        "harvest_per_code": harvest_result["per_class"],
        "replay_transactions": len(transactions),
        "replay_clean": round(clean / len(transactions), 4) if transactions else None,
        "replay_recognised": round(recognised / crops_total, 4) if crops_total else None,
        "known_top1": known_result["top1"],
        "detector_mAP50": side.detector.scenes_mAP50,
        "store_frames_mAP50": dict(side.detector.lanes_mAP50),
        "detector_boxes": dict(side.detector.scenes_boxes) or None,
        "store_frames_boxes": {lane: dict(v) for lane, v in side.detector.lanes_boxes.items()},
    }


def judge(
    production: dict[str, Any],
    candidate: dict[str, Any],
    new_codes: Sequence[str],
    policy: GatePolicy,
) -> dict[str, Any]:
    """Checks, each with both values and its verdict, and the overall one."""
    checks = [
        _not_worse(metric, production[metric], candidate[metric], policy.tolerance)
        for metric in HIGHER_IS_BETTER
        if production.get(metric) is not None and candidate.get(metric) is not None
    ]
    checks += _box_checks(
        "simulator test scenes",
        production.get("detector_boxes") or {},
        candidate.get("detector_boxes") or {},
        policy,
    )
    checks += _lane_checks(production, candidate, policy)
    per_code = candidate.get("harvest_per_code", {})
    for code in new_codes:
        if code not in per_code:
            continue
        checks.append(
            {
                "check": f"new product {code} identified at least {policy.new_product_min_top1}",
                "production": production.get("harvest_per_code", {}).get(code, 0.0),
                "candidate": per_code[code],
                "passed": per_code[code] >= policy.new_product_min_top1,
            }
        )
    failed = [c["check"] for c in checks if not c["passed"]]
    return {
        "passed": bool(checks) and not failed,
        "failed": failed if checks else ["nothing to compare: no held-out data"],
        "checks": checks,
        "tolerance": policy.tolerance,
        "production": production,
        "candidate": candidate,
        "new_codes": list(new_codes),
    }


def _lane_checks(
    production: dict[str, Any], candidate: dict[str, Any], policy: GatePolicy
) -> list[dict[str, Any]]:
    """One check per lane with held-out camera frames: the detector on that camera."""
    before = production.get("store_frames_mAP50") or {}
    after = candidate.get("store_frames_mAP50") or {}
    checks = [
        _not_worse(
            f"detector_mAP50 on {lane}'s newest camera frames",
            before[lane],
            after[lane],
            policy.tolerance,
        )
        for lane in sorted(set(before) & set(after))
    ]
    boxes_before = production.get("store_frames_boxes") or {}
    boxes_after = candidate.get("store_frames_boxes") or {}
    for lane in sorted(set(boxes_before) & set(boxes_after)):
        checks += _box_checks(
            f"{lane}'s newest camera frames", boxes_before[lane], boxes_after[lane], policy
        )
    return checks


def _box_checks(
    where: str, before: Mapping[str, Any], after: Mapping[str, Any], policy: GatePolicy
) -> list[dict[str, Any]]:
    """Own-box recall and precision at the lane's new-track score, each not worse than
    production's by more than the tolerance; a measure either side could not take (no true
    box, no detection) is skipped, as a missing metric is."""
    # What each measure is a share of: production's true boxes, the candidate's detections.
    boxes = {"own_box_recall": before.get("products"), "precision": after.get("detections")}
    checks = []
    for name in BOX_MEASURES:
        if before.get(name) is None or after.get(name) is None:
            continue
        tolerance = policy.tolerance
        count = boxes[name]
        if count:
            tolerance = max(tolerance, math.ceil(policy.box_slack / count * 1e4) / 1e4)
        checks.append(
            _not_worse(
                f"{name} at the lane's new-track score on {where}",
                before[name],
                after[name],
                tolerance,
            )
        )
    return checks


def _not_worse(what: str, before: float, after: float, tolerance: float) -> dict[str, Any]:
    return {
        "check": f"{what} not worse than production by more than {tolerance}",
        "production": before,
        "candidate": after,
        "passed": after >= before - tolerance,
    }
