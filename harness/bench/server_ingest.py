"""`laneguard bench server-ingest`: one store server takes what 50 lanes send, paced and flat
out, one and ten transactions per request."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import server_load

    return server_load.run_ingest()


def table(result: dict[str, Any]) -> list[str]:
    rows = ["| benchmark | measured | target |", "|---|---|---|"]
    for label, key, target in (
        (
            "500 transactions/s offered, one per request",
            "paced_500_per_s",
            ">= 500/s, p99 < 100 ms",
        ),
        ("as fast as answered, one per request", "flat_out_1_per_request", "-"),
        ("as fast as answered, ten per request", "flat_out_10_per_request", "-"),
    ):
        run = result[key]
        latency = run["latency_ms"]
        rows.append(
            f"| ingest, {run['lanes']} concurrent lanes, {label}, SQLite | "
            f"{run['transactions_per_s']} transactions/s over {run['seconds']} s "
            f"({run['errors']} errors), request latency p50 {latency['p50']} ms, p99 "
            f"{latency['p99']} ms | {target} |"
        )
    return rows


BENCHMARK = Benchmark(
    name="server-ingest",
    description="Store server ingest: 50 concurrent lanes, transactions/s and latency.",
    run=run,
    table=table,
)
