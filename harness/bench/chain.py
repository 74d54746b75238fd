"""`laneguard bench chain`: HQ ingest as stores are added, an HQ training pass, and what a
chain of 300 stores would ask of HQ."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import chain

    return chain.run(progress=lambda line: click.echo(line, err=True))


def table(result: dict[str, Any]) -> list[str]:
    rows = [
        "| HQ ingest (signed envelopes with JPEG crops over JetStream) | database | samples/s |",
        "|---|---|---|",
    ]
    for run in result["ingest"]:
        if "skipped" in run:
            rows.append(f"| - | - | skipped: {run['skipped']} |")
            continue
        rows.append(
            f"| {run['stores']} stores x {run['samples'] // run['stores']} samples "
            f"({run['envelope_kb']} KB each) | {run['database']} | {run['samples_per_s']} |"
        )
    rows += [
        "",
        "| HQ training pass (quick recipe) | samples | fine-tune s | chain gate s | "
        "per-store gate s | total s |",
        "|---|---|---|---|---|---|",
    ]
    for run in result["training"]:
        rows.append(
            f"| {run['stores']} stores | {run['samples']} | {run['fine_tune_s']} | "
            f"{run['chain_gate_s']} | {run['per_store_gate_s']} | {run['total_s']} |"
        )
    paper = result["chain_of_300_stores"]
    rows += [
        "",
        f"300 stores x 20 lanes ({paper['lanes']} lanes), on paper: {paper['samples_per_day']} "
        f"samples a day, {paper['peak_samples_per_s']}/s in the busiest hour, against "
        f"{paper['hq_ingest_measured_samples_per_s']}/s measured for one HQ consumer "
        f"({paper['hq_ingest_consumers_needed_at_peak']} needed); the per-store gate at "
        f"{paper['per_store_gate_s_per_store_measured']} s a store is "
        f"{paper['per_store_gate_300_stores_s']} s for 300.",
    ]
    return rows


BENCHMARK = Benchmark(
    name="chain",
    description="HQ ingest from many stores (samples/s) and HQ training time as stores are added.",
    run=run,
    table=table,
)
