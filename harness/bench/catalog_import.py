"""`laneguard bench catalog-import`: a store imports its whole catalog (100,000 products) from
a price file into a fresh SQLite database in under 10 s, and re-imports it quickly."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import catalog_import

    return catalog_import.run(rows=100_000)


def table(result: dict[str, Any]) -> list[str]:
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


BENCHMARK = Benchmark(
    name="catalog-import",
    description="Import a synthetic 100,000-product catalog into a fresh SQLite database.",
    run=run,
    table=table,
)
