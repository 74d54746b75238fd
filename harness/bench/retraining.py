"""`laneguard bench retraining`: the slow path, one `train run` pass from the shipped bundle on
harvested crops, production against candidate, and the gate's verdict."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark, produce_photos


def run() -> dict[str, Any]:
    from harness.benchmarks import retraining

    return retraining.run(produce_photos(), progress=lambda line: click.echo(line))


def table(result: dict[str, Any]) -> list[str]:
    def mean(rows: dict[str, dict[str, float | None]], side: str) -> str:
        values = [float(x) for x in (v[side] for v in rows.values()) if x is not None]
        return f"{sum(values) / len(values):.2f}" if values else "-"

    rows = ["| benchmark | production | candidate | target |", "|---|---|---|---|"]
    for kind in ("new_products", "packaging_changes"):
        group = result[kind]
        rows.append(
            f"| held-out crops of {len(group)} {kind.replace('_', ' ')}: top-1 (mean) | "
            f"{mean(group, 'production')} | {mean(group, 'candidate')} | learned (>= 0.8) |"
        )
    for check in result["checks"]:
        if check["check"].startswith("new product"):
            continue
        rows.append(
            f"| {check['check'].split(' ')[0]} | {check['production']} | {check['candidate']} | "
            "no regression |"
        )
    verdict = "passed" if result["passed"] else "refused: " + "; ".join(result["failed"])
    rows.append(f"| gate, one `train run` pass | | {verdict} in {result['seconds']} s | - |")
    return rows


BENCHMARK = Benchmark(
    name="retraining",
    description="The slow path: fine-tune from the shipped bundle on harvested crops, gated.",
    run=run,
    table=table,
)
