"""`laneguard bench node-counting`: counting accuracy over simulated transactions, with the
detector on every frame and on every other frame (both ways the lane can run)."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark, produce_photos


def run() -> dict[str, Any]:
    """Both ways the lane can run: the detector on every frame, and on every other frame."""
    from checkout_node.model_bundle import load_models
    from harness.evals.counting import evaluate_counting

    models = load_models()
    return {
        f"detect_interval_{interval}": evaluate_counting(
            models,
            transactions=50,
            produce_photos=produce_photos(),
            progress=lambda line: click.echo(line),
            detect_interval=interval,
        )
        for interval in (1, 2)
    }


def table(result: dict[str, Any]) -> list[str]:
    rows = ["| benchmark | measured | target |", "|---|---|---|"]
    for name, run in result.items():
        every = "every frame" if run["detect_interval"] == 1 else "every other frame"
        rows += [
            f"| counting, detector on {every}, {run['transactions']} mixed transactions "
            f"({run['true_items']} items) | {run['missed_visible']} missed visible, "
            f"{run['extra_counts']} double/extra counts, "
            f"{run['missed_hidden_under_other_items']} missed hidden under other items "
            "| 0 and 0 |",
            f"| riding item's own box / one box around the pair ({name}, "
            f"{run['riding_pair_frames']['frames']} detected frames) | "
            f"{run['riding_pair_frames']['riding_item_own_box']} / "
            f"{run['riding_pair_frames']['one_box_around_both']} | - |",
            f"| identity top-1 of counted known items ({name}) | {run['identity_top1']} | - |",
        ]
    return rows


BENCHMARK = Benchmark(
    name="node-counting",
    description="Counting accuracy over 50 simulated transactions of 5-40 items.",
    run=run,
    table=table,
)
