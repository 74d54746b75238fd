"""`laneguard bench lane-update`: how long a lane takes to go live on a new bundle from its
store, and a canary offered a broken bundle never goes live and halts the rollout."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import lane_update

    return lane_update.run()


def table(result: dict[str, Any]) -> list[str]:
    steps = ", ".join(f"{k} {v} s" for k, v in result["seconds_per_step"].items())
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| lane takes a new {result['bundle_mb']} MB bundle from its store server | "
        f"{result['seconds_to_live']} s to live ({steps}) | - |",
        f"| canary offered a bundle that fails its smoke test | {result['broken_bundle'][:60]}; "
        f"rollout {result['broken_rollout_result']} {result['seconds_from_offer_to_rollback']} s "
        "after the offer | never live, halted |",
    ]


BENCHMARK = Benchmark(
    name="lane-update",
    description="A lane takes a bundle from its store (download, checks, smoke test, swap).",
    run=run,
    table=table,
)
