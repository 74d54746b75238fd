"""`laneguard bench sim-render`: the simulator renders lane video faster than a lane plays it,
so simulated checkouts and training data are cheap to make."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import rendering

    return rendering.run()


def table(result: dict[str, Any]) -> list[str]:
    verdict = "yes" if result["meets_target"] else "NO"
    return [
        "| benchmark | measured | target | met |",
        "|---|---|---|---|",
        f"| simulator rendering, {result['resolution']}, 1 thread | "
        f"{result['frames_per_second']} frames/s ({result['ms_per_frame']} ms) | "
        f">= {result['target_fps']} frames/s | {verdict} |",
    ]


BENCHMARK = Benchmark(
    name="sim-render",
    description="Render a minute of simulated lane video on one thread.",
    run=run,
    table=table,
)
