"""`laneguard bench node-outage`: a lane keeps selling through a store server outage and its
outbox delivers everything, once, when the server returns."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import outage

    return outage.run(transactions=200, outage_s=600.0)


def table(result: dict[str, Any]) -> list[str]:
    stored = result["stored"]
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| store server down {result['outage_s']} s during {result['transactions']} "
        f"transactions | {stored['TransactionRecord']} transactions and {stored['AlertRecord']} of "
        f"{result['expected']['alerts']} alerts stored once; outbox peaked at "
        f"{result['max_outbox_depth']} messages, its backlog delivered "
        f"{result['backlog_delivered_after_return_s']} s after the server returned | "
        "nothing lost |",
    ]


BENCHMARK = Benchmark(
    name="node-outage",
    description="200 transactions with the store server down for 10 minutes: nothing lost.",
    run=run,
    table=table,
)
