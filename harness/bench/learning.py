"""`laneguard bench learning`: a new product and a new packaging are learned from honest
transactions, end to end through a real lane and store server, and reach the lane's gallery
within 60 s."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.evals import learning

    return {
        kind: learning.run(kind=kind, progress=lambda line: click.echo(line))
        for kind in learning.KINDS
    }


def table(result: dict[str, Any]) -> list[str]:
    rows = ["| benchmark | measured | target |", "|---|---|---|"]
    for kind, run in result.items():
        product = run["product"]
        before = [t["score"] for t in run["transactions"] if not t["recognised"]]
        rows.append(
            f"| {kind.replace('_', ' ')} ({product['name']}) learned from honest transactions, "
            f"real lane + store server | not recognised before (similarity "
            f"{min(before)}-{max(before)}); recognised after "
            f"{run['recognised_after_honest_transactions']} honest transactions; gallery at the "
            f"lane {run['seconds_from_delivery_to_lane_gallery']} s after delivery; skip-scan "
            f"alert names it: {run['skip_scan_alert_names_product']} | within 60 s |"
        )
    return rows


BENCHMARK = Benchmark(
    name="learning",
    description="New product and new packaging learned from honest transactions, end to end.",
    run=run,
    table=table,
)
