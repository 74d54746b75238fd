"""The embedder menu benchmark: what it counts, what it measures, what it picks."""

from __future__ import annotations

from pathlib import Path

from harness.bench.embedder_variants import table as embedder_variants_table
from harness.benchmarks.embedder_variants import (
    CROP_BUDGET_MS,
    choose,
    frozen_embedder,
    run,
)
from trainer.cost import multiply_adds


def test_lite0_costs_what_its_paper_says() -> None:
    # EfficientNet-Lite0 is quoted at about 0.4 G multiply-adds at 224 (0.39 in TF's model
    # zoo); a quarter of the pixels costs about a quarter (a little more: "same" padding
    # rounds the small feature maps up).
    model = frozen_embedder("lite0")
    at_224 = multiply_adds(model, 224)
    assert 370e6 < at_224 < 420e6
    assert at_224 / 4 < multiply_adds(model, 112) < 1.15 * at_224 / 4


def test_each_profile_takes_the_most_accurate_variant_that_fits() -> None:
    rows = [
        {"variant": "small", "latency_ms_1_thread": 4.0, "top1": 0.60},
        {"variant": "medium", "latency_ms_1_thread": 10.0, "top1": 0.70},
        {"variant": "large", "latency_ms_1_thread": 30.0, "top1": 0.75},
    ]
    chosen = choose(rows)
    assert chosen["x86-2core"]["variant"] == "large"  # 30 ms fits the 33 ms budget here
    assert chosen["raspberry-pi-5"]["variant"] == "medium"  # 2.5 x 30 does not; 2.5 x 10 does
    assert chosen["jetson-orin-nano"]["variant"] == "large"
    assert all(pick["fits"] for pick in chosen.values())
    slow = [{"variant": "huge", "latency_ms_1_thread": 100.0, "top1": 0.9}, *rows[:1]]
    slow[1] = {**slow[1], "latency_ms_1_thread": 20.0}
    pi = choose(slow)["raspberry-pi-5"]
    assert pi["variant"] == "small" and not pi["fits"]  # none fits: the fastest, flagged
    assert pi["estimated_crop_ms"] == 50.0 > CROP_BUDGET_MS


def test_the_benchmark_measures_real_variants_on_real_photos(produce_photos: Path) -> None:
    result = run(
        produce_photos,
        refs_per_class=1,
        queries_per_class=2,
        archs=("lite0",),
        sizes=(96,),
        progress=lambda _line: None,
    )
    rows = result["variants"]
    assert [r["variant"] for r in rows] == [
        "efficientnet-lite0/96/fp32",
        "efficientnet-lite0/96/int8",
    ]
    assert result["classes"] == 50 and result["queries"] == 100
    fp32, int8 = rows
    assert int8["file_mb"] < fp32["file_mb"] / 2
    for row in rows:
        assert row["latency_ms_1_thread"] > 0 and row["mmacs"] > 0
        assert row["top1"] > 0.15  # ImageNet features already tell produce apart (chance 0.02)
    table = embedder_variants_table(result)
    assert any("efficientnet-lite0/96/int8" in line for line in table)
