"""The smoke test takes its golden frames from the candidate bundle itself: the shipped bundle's
frames load, a bundle that carries none fails with a reason that says so."""

from __future__ import annotations

from pathlib import Path

from checkout_node.model_bundle import load_models
from checkout_node.smoke_test import SmokeLimits, check, golden_frames, run_smoke_test
from laneguard.bundle import SHIPPED_BUNDLE, derive_bundle


def test_the_shipped_bundle_carries_golden_frames_with_boxes_inside_them() -> None:
    models = load_models(SHIPPED_BUNDLE)
    frames, labels = golden_frames(models.folder, models.manifest)
    assert frames.shape[1:] == (480, 640, 3) and len(frames) == len(labels) == 12
    for items in labels:
        assert items, "every golden frame shows an item"
        for item in items:
            x1, y1, x2, y2 = item["box"]
            assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
            assert item["code"] in models.gallery.codes


def test_the_shipped_bundle_passes_its_own_smoke_test_checks() -> None:
    result = check(SHIPPED_BUNDLE, None, SmokeLimits(latency_budget_ms=10_000))
    assert result.passed, result.reasons
    assert result.metrics["golden_frames"] == 12 and result.metrics["recall"] >= 0.8


def test_a_bundle_without_golden_frames_fails_the_smoke_test_saying_why(tmp_path: Path) -> None:
    bare = derive_bundle(SHIPPED_BUNDLE, tmp_path / "bare.tar.gz", fields={"golden_frames": None})
    result = run_smoke_test(bare, None, SmokeLimits(latency_budget_ms=10_000), timeout_s=120)
    assert not result.passed
    assert any("carries no golden frames" in reason for reason in result.reasons), result.reasons
