"""`laneguard bench server-fanout`: an alert reaches every open manager console quickly."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import server_load

    return server_load.run_fanout()


def table(result: dict[str, Any]) -> list[str]:
    delay = result["ingest_to_console_ms"]
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| live alert fan-out to {result['consoles']} consoles, {result['alerts']} alerts | "
        f"{result['deliveries']}/{result['expected_deliveries']} delivered, ingest to console "
        f"p50 {delay['p50']} ms, p99 {delay['p99']} ms | p99 < 100 ms |",
    ]


BENCHMARK = Benchmark(
    name="server-fanout",
    description="Live alert fan-out to 50 open consoles: ingest-to-console latency.",
    run=run,
    table=table,
)
