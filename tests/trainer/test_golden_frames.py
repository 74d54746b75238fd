"""The trainer renders golden frames into bundles: added to a bundle that lacks them, they give
a bundle the lane's smoke test accepts, and every member stays hashed."""

from __future__ import annotations

import tarfile
from pathlib import Path

from checkout_node.smoke_test import SmokeLimits, run_smoke_test
from laneguard.bundle import GOLDEN_FRAMES, SHIPPED_BUNDLE, derive_bundle, read_manifest
from trainer.golden import add_golden_frames


def test_golden_frames_added_to_a_bundle_without_them_pass_the_smoke_test(
    tmp_path: Path,
) -> None:
    with tarfile.open(SHIPPED_BUNDLE, "r:gz") as tar:
        names = set(tar.getnames())
    assert GOLDEN_FRAMES in names
    bare = derive_bundle(SHIPPED_BUNDLE, tmp_path / "bare.tar.gz", fields={"golden_frames": None})
    assert read_manifest(bare).golden_frames is None

    again = add_golden_frames(bare, tmp_path / "again.tar.gz")
    manifest = read_manifest(again)
    assert manifest.golden_frames == GOLDEN_FRAMES and GOLDEN_FRAMES in manifest.files
    result = run_smoke_test(again, None, SmokeLimits(latency_budget_ms=10_000), timeout_s=120)
    assert result.passed, result.reasons
    assert result.metrics["golden_frames"] == 12
