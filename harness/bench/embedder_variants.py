"""`laneguard bench embedder-variants`: the embedder menu measured (cost, size, latency, top-1
on the real produce photos) and the variant each board's profile picks; skipped without the
photos, since accuracy is only measured on real ones."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark, produce_photos


def run() -> dict[str, Any]:
    from harness.benchmarks import embedder_variants

    photos = produce_photos()
    if photos is None:
        return {
            "skipped": "accuracy is measured on the real produce photos: set "
            "LANEGUARD_PRODUCE_PHOTOS to the grocery-produce folder"
        }
    return embedder_variants.run(photos, progress=lambda line: click.echo(line, err=True))


def table(result: dict[str, Any]) -> list[str]:
    if "skipped" in result:
        return [f"embedder variants skipped: {result['skipped']}"]
    rows = [
        f"Accuracy: {result['accuracy']} ({result['queries']} queries). Budget: "
        f"{result['crop_budget_ms']} ms per crop on one thread of the board.",
        "",
        "| variant | MMAC | MB | ms, 1 thread | ms, 2 threads | top-1 |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["variants"]:
        rows.append(
            f"| {row['variant']} | {row['mmacs']} | {row['file_mb']} | "
            f"{row['latency_ms_1_thread']} | {row['latency_ms_2_threads']} | {row['top1']} |"
        )
    rows += ["", "| profile | variant | estimated ms per crop | fits |", "|---|---|---|---|"]
    for profile, pick in result["chosen"].items():
        rows.append(
            f"| {profile} | {pick['variant']} | {pick['estimated_crop_ms']} | "
            f"{'yes' if pick['fits'] else 'NO'} |"
        )
    return rows


BENCHMARK = Benchmark(
    name="embedder-variants",
    description="The embedder menu (Lite0/1 x input size x fp32/int8) and each board's pick.",
    run=run,
    table=table,
)
