"""`eval lanes` on a short run: a real lane, its screen socket, scored against ground truth."""

from __future__ import annotations

from checkout_node.model_bundle import load_models
from harness.evals.lanes import evaluate_lanes


def test_a_skip_scan_checkout_is_scored_with_its_alert_and_latency() -> None:
    lines: list[str] = []
    result = evaluate_lanes(
        load_models(),
        scenarios=1,
        seed=1,
        fps=15.0,
        kinds=("skip_scan", "scan_without_item"),
        progress=lines.append,
    )
    assert result["transactions"] == 2 and len(lines) == 2
    # The code scanned with nothing on the lane is in the transaction as a quiet entry: no
    # item was lost around it, so the cashier is not shown a note.
    assert result["scans_without_item_recorded"] == 1.0
    assert result["alerts"]["scan_without_item"]["raised"] == 0
    assert result["alerts_per_transaction"] == 0.5
    assert result["items"] >= 2 and result["items_missed_per_100"] is not None
    unscanned = result["alerts"]["unscanned_item"]
    assert unscanned["expected"] == 1 and unscanned["recall"] == 1.0
    # Whether the recogniser named every item is the benchmark's business (`eval lanes`); here
    # the score must agree with the checkout it reports.
    exact = {r["kind"] for r in result["not_exact"]}
    assert result["checkout_accuracy"] == 1.0 - len(exact) / 2
    for wrong in result["not_exact"]:
        assert len(wrong["seen"]) == len(wrong["true"])
    latency = result["alert_latency_ms"]
    assert latency["n"] == 1 and 0 < latency["p50"] == latency["p99"]
    assert result["honest_transactions"] == 0 and result["false_alerts_per_100_honest"] is None
