"""`laneguard bench detector-variants`: the detector menu, the shipped detectors against
ones over a pretrained backbone: lane latency against the frame budget, and training cost."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import detector_variants

    return detector_variants.run(progress=lambda line: click.echo(line, err=True))


def table(result: dict[str, Any]) -> list[str]:
    rows = [
        f"session.run on {result['threads']} threads; the lane's frame budget at 30 frames/s is "
        f"{result['frame_budget_ms']} ms for everything.",
        "",
        "| variant | MMAC | MB | ms | frames/s ceiling | ms left at 30 frames/s | mAP50 (test) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["variants"]:
        rows.append(
            f"| {row['variant']} | {row.get('mmacs', '-')} | {row['file_mb']} | "
            f"{row['latency_ms']} | {row['fps_ceiling']} | {row['leaves_ms_at_30fps']} | "
            f"{row['test_scene_mAP50'] if row['test_scene_mAP50'] is not None else 'not trained'} |"
        )
    rows += [
        "",
        f"| training: network | parameters (M) | s per forward+backward of "
        f"{result['train_batch']} at {result['train_size']} |",
        "|---|---|---|",
    ]
    for row in result["training"]:
        rows.append(f"| {row['variant']} | {row['parameters_m']} | {row['train_step_s']} |")
    return rows


BENCHMARK = Benchmark(
    name="detector-variants",
    description=(
        "The detector menu: shipped YOLO11 p against YOLO11 over a pretrained "
        "EfficientNet-Lite0 (input size, fp32/int8): lane latency and training cost."
    ),
    run=run,
    table=table,
)
