"""`laneguard bench ...`: the speed and size targets, measured, written as JSON and markdown.

Each benchmark lives next to the code it measures and returns a dict; this module runs them,
writes ``<out>/<name>.json`` and appends a row per result to ``<out>/summary.md``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click


def _catalog_import(rows: int = 100_000) -> dict[str, Any]:
    from product_db import benchmark

    return benchmark.run(rows=rows)


def _machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _markdown_row_catalog(result: dict[str, Any]) -> list[str]:
    first, again, changed = result["first"], result["reimport"], result["price_changes"]
    verdict = "yes" if result["meets_target"] else "NO"
    return [
        "| benchmark | measured | target | met |",
        "|---|---|---|---|",
        f"| catalog import, {result['rows']:,} rows ({result['database']}) | "
        f"{first['seconds']} s ({first['rows_per_second']:,} rows/s) | < 10 s | {verdict} |",
        f"| catalog re-import, no changes | {again['seconds']} s | - | - |",
        f"| catalog re-import, {changed['price_changes']:,} price changes | "
        f"{changed['seconds']} s | - | - |",
    ]


def _sim_render() -> dict[str, Any]:
    from simulator import benchmark

    return benchmark.run()


def _markdown_sim(result: dict[str, Any]) -> list[str]:
    verdict = "yes" if result["meets_target"] else "NO"
    return [
        "| benchmark | measured | target | met |",
        "|---|---|---|---|",
        f"| simulator rendering, {result['resolution']}, 1 thread | "
        f"{result['frames_per_second']} frames/s ({result['ms_per_frame']} ms) | "
        f">= {result['target_fps']} frames/s | {verdict} |",
    ]


BENCHMARKS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], list[str]]]]
BENCHMARKS = {
    "catalog-import": (_catalog_import, _markdown_row_catalog),
    "sim-render": (_sim_render, _markdown_sim),
}


def _write(out: Path, name: str, result: dict[str, Any], table: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"benchmark": name, "machine": _machine(), "result": result}
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n", "utf-8")
    with (out / "summary.md").open("a", encoding="utf-8") as handle:
        handle.write(f"\n### {name}\n\n" + "\n".join(table) + "\n")
    click.echo("\n".join(table))


@click.group()
def bench() -> None:
    """Measure LaneGuard's speed targets on this computer."""


@bench.command("catalog-import")
@click.option("--rows", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True
)
def catalog_import_command(rows: int, out: Path) -> None:
    """Import a synthetic catalog of ROWS products into a fresh SQLite database."""
    result = _catalog_import(rows)
    _write(out, "catalog-import", result, _markdown_row_catalog(result))


@bench.command("sim-render")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True
)
def sim_render_command(out: Path) -> None:
    """Render a minute of simulated lane video on one thread."""
    result = _sim_render()
    _write(out, "sim-render", result, _markdown_sim(result))


@bench.command("all")
@click.option(
    "--out", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True
)
def all_command(out: Path) -> None:
    """Run every benchmark with its default size; results go to OUT/*.json and OUT/summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.md").write_text(
        f"# LaneGuard benchmarks\n\n{time.strftime('%Y-%m-%d %H:%M')} on "
        f"{platform.machine()}, {_machine()['cpus']} CPUs\n",
        "utf-8",
    )
    for name, (runner, table) in BENCHMARKS.items():
        click.echo(f"== {name}")
        result = runner()
        _write(out, name, result, table(result))
