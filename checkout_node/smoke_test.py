"""A candidate bundle's smoke test, on this lane, before it may go live.

It runs in a child process (`python -m checkout_node.smoke_test`), so a model that crashes
onnxruntime takes only the child with it. On the golden frames the bundle carries (lane frames
with known items, rendered by the trainer and covered by the bundle's hashes and signature) the
candidate's detector must find the items, its embedder must give unit vectors that pick each
packaged item out of the gallery, its verifier (when it has one) must take the items for
merchandise, and the detector must stay within the lane's latency budget.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from laneguard.bundle import BundleError, Manifest


@dataclass
class SmokeResult:
    passed: bool
    reasons: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SmokeLimits:
    min_recall: float = 0.8  # of the golden items, by a detection with IoU >= 0.5
    min_identity: float = 0.6  # packaged golden items whose nearest gallery code is theirs
    # Golden items the verifier (when the bundle has one) takes for merchandise: a verifier that
    # refused the lane's own products would stop every new track below 0.5 and veto the rest.
    min_verified: float = 0.9
    latency_budget_ms: float | None = None  # default: the profile's, else 250 ms


def golden_frames(
    folder: Path, manifest: Manifest
) -> tuple[np.ndarray, list[list[dict[str, Any]]]]:
    """The bundle's golden frames and, per frame, the box and code of each item shown."""
    if manifest.golden_frames is None:
        raise BundleError(f"bundle {manifest.version} carries no golden frames to test it on")
    stored = np.load(folder / manifest.golden_frames, allow_pickle=False)
    jpeg, ends = stored["jpeg"], stored["ends"]
    starts = np.concatenate([[0], ends[:-1]])
    frames = [cv2.imdecode(jpeg[a:b], cv2.IMREAD_COLOR) for a, b in zip(starts, ends)]
    if any(frame is None for frame in frames):
        raise BundleError(f"bundle {manifest.version}: a golden frame does not decode")
    return np.stack(frames), json.loads(str(stored["boxes"]))  # type: ignore[arg-type]


def check(bundle: Path, profile: str | None, limits: SmokeLimits) -> SmokeResult:
    """The checks themselves (in whatever process calls this)."""
    from checkout_node.model_bundle import load_models
    from checkout_node.vision.detector import Detector
    from checkout_node.vision.tracker import iou_matrix
    from laneguard.embedding import Embedder

    models = load_models(bundle, profile=profile)
    chosen = next((p for p in models.manifest.profiles if p.name == profile), None)
    budget = limits.latency_budget_ms or (
        chosen.detector_latency_budget_ms if chosen is not None else 250.0
    )
    detector = Detector(models.path(models.detector), models.threads, confidence=0.25)
    embedder = Embedder(models.path(models.embedder), threads=models.threads)
    frames, labels = golden_frames(models.folder, models.manifest)
    detector.detect(frames[0])  # first run pays for memory allocation
    latencies, found, total, identity_hits, identity_checked = [], 0, 0, 0, 0
    nonfinite = 0
    known = set(models.gallery.codes)
    for frame, items in zip(frames, labels):
        start = time.perf_counter()
        detections = detector.detect(frame)
        latencies.append(1000 * (time.perf_counter() - start))
        truth = np.array([item["box"] for item in items], np.float32)
        if len(detections):
            found += int((iou_matrix(truth, detections.boxes).max(axis=1) >= 0.5).sum())
        total += len(items)
        crops = [frame[y1:y2, x1:x2] for x1, y1, x2, y2 in truth.astype(int)]
        vectors = embedder.embed(crops)
        finite = np.isfinite(vectors).all(axis=1)
        nonfinite += int((~finite).sum())
        checked = [
            (item, v) for item, v, ok in zip(items, vectors, finite) if ok and item["code"] in known
        ]
        if checked:
            matches = models.gallery.identify(np.stack([v for _, v in checked]), k=1)
            identity_checked += len(checked)
            identity_hits += sum(
                m[0].code == item["code"] for (item, _), m in zip(checked, matches)
            )
    verified = _verified_share(models, frames, labels)
    recall = found / total if total else 0.0
    identity = identity_hits / identity_checked if identity_checked else 1.0
    p95 = float(np.percentile(latencies, 95))
    result = SmokeResult(
        True,
        metrics={
            "bundle": models.manifest.version,
            "golden_frames": len(frames),
            "golden_items": total,
            "recall": round(recall, 3),
            "identity_top1": round(identity, 3),
            "detector_ms_p95": round(p95, 1),
            "verified": None if verified is None else round(verified, 3),
            "latency_budget_ms": budget,
        },
    )
    if recall < limits.min_recall:
        result.reasons.append(f"detector found {recall:.0%} of the golden items")
    if identity < limits.min_identity:
        result.reasons.append(f"embedder identified {identity:.0%} of the golden items")
    if nonfinite:
        result.reasons.append(f"embedder gave {nonfinite} vectors that are not finite")
    if verified is not None and not verified >= limits.min_verified:  # NaN fails too
        result.reasons.append(f"verifier took {verified:.0%} of the golden items for products")
    if p95 > budget:
        result.reasons.append(f"detector took {p95:.0f} ms (p95), budget {budget:.0f} ms")
    result.passed = not result.reasons
    return result


def _verified_share(
    models: Any, frames: np.ndarray, labels: list[list[dict[str, Any]]]
) -> float | None:
    """The share of golden items the bundle's verifier passes, as the lane cuts their crops;
    None without a verifier; NaN when it gives anything but shares in 0..1."""
    if models.verifier is None:
        return None
    from checkout_node.vision.verifier import ProductVerifier, VerifierConfig

    verifier = ProductVerifier(models.path(models.verifier), models.threads)
    shares = [
        verifier.not_product(frame, np.array([item["box"] for item in items], np.float32))
        for frame, items in zip(frames, labels)
        if items
    ]
    share = np.concatenate(shares) if shares else np.zeros(0, np.float32)
    if not (np.isfinite(share).all() and ((share >= 0) & (share <= 1)).all()):
        return float("nan")
    return float((share < VerifierConfig().veto_share).mean()) if len(share) else 1.0


def run_smoke_test(
    bundle: Path,
    profile: str | None,
    limits: SmokeLimits | None = None,
    timeout_s: float = 600.0,
) -> SmokeResult:
    """The smoke test in a child process; a crash, hang or error there is a failed test."""
    limits = limits or SmokeLimits()
    command = [sys.executable, "-m", "checkout_node.smoke_test", str(bundle)]
    command += ["--limits", json.dumps(asdict(limits))]
    if profile:
        command += ["--profile", profile]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return SmokeResult(False, [f"smoke test did not finish in {timeout_s:.0f} s"])
    if done.returncode < 0:
        return SmokeResult(False, [f"smoke test crashed (signal {-done.returncode})"])
    try:
        body = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return SmokeResult(False, [f"smoke test failed (exit {done.returncode}): {tail[0]}"])
    return SmokeResult(bool(body["passed"]), list(body["reasons"]), dict(body["metrics"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--limits", default="{}")
    args = parser.parse_args(argv)
    limits = SmokeLimits(**json.loads(args.limits))
    try:
        result = check(args.bundle, args.profile, limits)
    except Exception as exc:  # any failure of the candidate is the answer, not a crash
        result = SmokeResult(False, [f"{type(exc).__name__}: {exc}"[:400]])
    print(json.dumps(asdict(result)))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
