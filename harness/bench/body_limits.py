"""`laneguard bench body-limits`: 1 GB request bodies to a store server and a lane are refused
before they are read, and memory stays bounded."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import body_limits

    return body_limits.run()


def table(result: dict[str, Any]) -> list[str]:
    rows = [
        "| benchmark | answer | sent before it | peak memory growth | target |",
        "|---|---|---|---|---|",
    ]
    for side, label in (("store", "store server"), ("lane", "lane")):
        for name, run in result[side].items():
            rows.append(
                f"| 1 GB body to the {label}: {name.replace('_', ' ')} | {run['status']} | "
                f"{run['body_bytes_sent_before_answer'] / 2**20:.1f} MB | "
                f"{run['peak_growth_mb']} MB above idle ({run['idle_rss_mb']} MB) | < 100 MB |"
            )
    return rows


BENCHMARK = Benchmark(
    name="body-limits",
    description="1 GB request bodies to a store server and a lane: refused, memory bounded.",
    run=run,
    table=table,
)
