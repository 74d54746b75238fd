"""`laneguard bench store-camera`: a store's camera the detector never saw, learned from one
lane's day of honest checkouts and one slow-path pass, end to end (issue #35)."""

from __future__ import annotations

from typing import Any

import click

from harness.bench.benchmark import Benchmark, produce_photos


def run() -> dict[str, Any]:
    from harness.evals.store_camera import StoreCameraConfig
    from harness.evals.store_camera import run as measure

    return measure(
        StoreCameraConfig(produce_photos=produce_photos()), progress=lambda line: click.echo(line)
    )


def _recall(side: dict[str, Any]) -> str:
    return f"{side['own_box_recall']} ({side['own']} of {side['products']})"


def table(result: dict[str, Any]) -> list[str]:
    recall, lanes = result["recall"], result["lanes"]
    production, candidate = recall["production"], recall["candidate"]
    day = result["lane_day"]
    gate = result.get("gate") or {}
    rows = ["| benchmark | measured | target |", "|---|---|---|"]
    rows.append(
        f"| store look `{result['look']}`: products with a box of their own on held-out frames "
        f"(new-track score) | production {_recall(production['store_look'])} -> candidate "
        f"{_recall(candidate['store_look'])}, after {day['honest']} honest checkouts of "
        f"{day['checkouts']} ({day['frames_queued']} frames sent) and one pass "
        f"({result['pass_seconds']} s, gate "
        f"{'passed' if gate.get('passed') else 'refused'}) | at least 0.95 after at most 200 "
        "honest transactions |"
    )
    rows.append(
        f"| the simulator's own look, the same | production "
        f"{_recall(production['simulator_look'])} -> candidate "
        f"{_recall(candidate['simulator_look'])} | no worse |"
    )
    if not lanes:
        return rows
    accuracy = {name: side.get("checkout_accuracy") for name, side in lanes.items()}
    rows.append(
        f"| `eval lanes` checkout accuracy | production: simulator look "
        f"{accuracy['production_simulator_look']}, store look "
        f"{accuracy['production_store_look']}; candidate, store look "
        f"{accuracy['candidate_store_look']} | store look within 0.03 of the simulator's |"
    )
    return rows


BENCHMARK = Benchmark(
    name="store-camera",
    description="A store camera the detector never saw, learned from a lane's day of honest "
    "checkouts and one slow-path pass.",
    run=run,
    table=table,
)
