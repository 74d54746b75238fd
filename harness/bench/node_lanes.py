"""`laneguard bench node-lanes`: simulated checkouts of every kind through a real lane: checkout
accuracy, alert precision and recall, false alerts and alert latency."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark, produce_photos


def run() -> dict[str, Any]:
    from checkout_node.model_bundle import load_models
    from harness.evals.lanes import evaluate_lanes

    return evaluate_lanes(
        load_models(),
        scenarios=5,
        produce_photos=produce_photos(),
        progress=lambda line: click.echo(line),
    )


def table(result: dict[str, Any]) -> list[str]:
    alerts = result["alerts"]

    def pr(kind: str) -> str:
        return f"precision {alerts[kind]['precision']}, recall {alerts[kind]['recall']}"

    latency = result["alert_latency_ms"]
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| checkout accuracy, {result['transactions']} simulated checkouts (every kind) | "
        f"{result['checkout_accuracy']} (known products only: "
        f"{result['checkout_accuracy_known_products']}) | >= 0.99 on known products |",
        f"| skip-scan alerts | {pr('unscanned_item')} | recall >= 0.95 |",
        f"| switch alerts (ticket and PLU) | {pr('switch')} | recall >= 0.95 |",
        f"| scan without item: recorded (note or quiet entry); notes shown | "
        f"{result['scans_without_item_recorded']}; {pr('scan_without_item')} | - |",
        f"| false alerts per 100 honest transactions (of them notes) | "
        f"{result['false_alerts_per_100_honest']} ({result['notes_per_100_honest']}) | <= 1 |",
        f"| alerts per transaction; quiet entries per 100 honest | "
        f"{result['alerts_per_transaction']}; {result['quiet_entries_per_100_honest']} | - |",
        f"| items missed / counted extra per 100 true items ({result['items']} items) | "
        f"{result['items_missed_per_100']} / {result['items_counted_extra_per_100']} | - |",
        f"| alert latency, bagging to screen websocket | p50 {latency['p50']} ms, p99 "
        f"{latency['p99']} ms ({latency['n']} alerts) | p99 <= 300 ms |",
    ]


BENCHMARK = Benchmark(
    name="node-lanes",
    description="Checkout accuracy, alert precision/recall and latency: 5 checkouts per kind.",
    run=run,
    table=table,
)
