"""`eval lanes` on a short run: a real lane, its screen socket, scored against ground truth."""

from __future__ import annotations

from checkout_node.models import load_models
from harness.evals.lanes import evaluate_lanes


def test_a_skip_scan_checkout_is_scored_with_its_alert_and_latency() -> None:
    lines: list[str] = []
    result = evaluate_lanes(
        load_models(), scenarios=1, seed=1, fps=15.0, kinds=("skip_scan",), progress=lines.append
    )
    assert result["transactions"] == 1 and len(lines) == 1
    unscanned = result["alerts"]["unscanned_item"]
    assert unscanned["expected"] == 1 and unscanned["recall"] == 1.0
    # Whether the recogniser named every item is the benchmark's business (`eval lanes`); here
    # the score must agree with the checkout it reports.
    exact = not result["not_exact"]
    assert result["checkout_accuracy"] == (1.0 if exact else 0.0)
    if not exact:
        (wrong,) = result["not_exact"]
        assert wrong["kind"] == "skip_scan" and len(wrong["seen"]) == len(wrong["true"])
    latency = result["alert_latency_ms"]
    assert latency["n"] == 1 and 0 < latency["p50"] == latency["p99"]
    assert result["honest_transactions"] == 0 and result["false_alerts_per_100_honest"] is None
