"""`laneguard bench picklist-prior`: the produce pick list on the real produce photos, and what
the store's sales prior does to it in simulated stores with skewed sales (the lane's ranking,
checkout_node.picklist); skipped without the photos."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness.bench.benchmark import Benchmark, produce_photos


def run() -> dict[str, Any]:
    from harness.evals.picklist import produce_prior_benchmark
    from laneguard.bundle import SHIPPED_BUNDLE, extract_bundle

    photos = produce_photos()
    if photos is None:
        return {
            "skipped": "the pick list is measured on the real produce photos: set "
            "LANEGUARD_PRODUCE_PHOTOS to the grocery-produce folder"
        }
    with tempfile.TemporaryDirectory(prefix="laneguard-picklist-") as tmp:
        manifest = extract_bundle(SHIPPED_BUNDLE, Path(tmp))
        model = next(m for m in manifest.models if m.role == "embedder" and m.precision == "fp32")
        result = produce_prior_benchmark(Path(tmp) / model.file, photos)
    return {**result, "bundle": manifest.version}


def table(result: dict[str, Any]) -> list[str]:
    if "skipped" in result:
        return [f"pick list skipped: {result['skipped']}"]
    flat = result["flat_on_the_test_split"]
    rows = [
        f"Pick list on {result['n_query']} real produce photos, {result['refs_per_class']} "
        f"references per PLU, flat prior: top-1 {flat['top1']}, top-2 {flat['top2']}, "
        f"top-4 {flat['top4']}.",
        "",
        "| store's sales (Zipf) | best seller's share | flat prior top-1 / top-4 | "
        "sales prior top-1 / top-4 |",
        "|---|---|---|---|",
    ]
    for row in result["stores"]:
        rows.append(
            f"| {row['zipf_exponent']}, store {row['store']} | {row['best_seller_share']} | "
            f"{row['flat_prior']['top1']} / {row['flat_prior']['top4']} | "
            f"{row['sales_prior']['top1']} / {row['sales_prior']['top4']} |"
        )
    return rows


BENCHMARK = Benchmark(
    name="picklist-prior",
    description="The produce pick list on real photos, with and without a store's sales prior.",
    run=run,
    table=table,
)
