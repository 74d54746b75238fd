"""`laneguard bench monitoring`: scraping /metrics is cheap on a lane and a store, and
publishing store events over MQTT adds little to ingest latency."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import monitoring

    return monitoring.run()


def table(result: dict[str, Any]) -> list[str]:
    lane, off = result["lane_scrape"], result["without_mqtt"]
    rows = [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| lane /metrics scrape ({lane['bytes']:,} bytes) | p50 {lane['p50_ms']} ms, "
        f"p99 {lane['p99_ms']} ms | < 10 ms |",
        f"| store /metrics scrape, during and after the load | "
        f"p50 {off['store_scrape']['p50_ms']} ms, p99 {off['store_scrape']['p99_ms']} ms "
        "| < 10 ms |",
        f"| ingest p99 at 500 transactions/s, no MQTT | {off['ingest']['latency_ms']['p99']} ms "
        f"({off['ingest']['transactions_per_s']}/s) | - |",
    ]
    on = result["with_mqtt"]
    if "skipped" in on:
        rows.append(f"| with MQTT | skipped: {on['skipped']} | - |")
    else:
        rows.append(
            f"| ingest p99 with MQTT events (1 alert per 10 transactions) | "
            f"{on['ingest']['latency_ms']['p99']} ms ({on['ingest']['transactions_per_s']}/s); "
            f"adds {result['mqtt_adds_to_ingest_p99_ms']} ms | adds < 5 ms |"
        )
    return rows


BENCHMARK = Benchmark(
    name="monitoring",
    description="/metrics scrape time on a lane and a store; MQTT's cost to ingest p99.",
    run=run,
    table=table,
)
