"""The `laneguard bench` benchmarks: one module each, declaring it (harness.bench.benchmark).

BENCHMARKS is the one list of them, in the order `laneguard bench all` (`make bench`) runs them
and writes them to summary.md. The code that measures lives in harness.benchmarks and
harness.evals; these modules say how the CLI runs it and how its result reads as markdown.
"""

from __future__ import annotations

from harness.bench import (
    body_limits,
    catalog_import,
    chain,
    clips,
    detector_variants,
    embedder_variants,
    lane_update,
    learning,
    monitoring,
    node_counting,
    node_lanes,
    node_outage,
    node_pipeline,
    picklist_prior,
    retraining,
    server_fanout,
    server_ingest,
    sim_render,
    store_camera,
)
from harness.bench.benchmark import Benchmark

BENCHMARKS: tuple[Benchmark, ...] = (
    catalog_import.BENCHMARK,
    sim_render.BENCHMARK,
    node_pipeline.BENCHMARK,
    node_counting.BENCHMARK,
    node_lanes.BENCHMARK,
    node_outage.BENCHMARK,
    server_ingest.BENCHMARK,
    server_fanout.BENCHMARK,
    learning.BENCHMARK,
    lane_update.BENCHMARK,
    retraining.BENCHMARK,
    store_camera.BENCHMARK,
    body_limits.BENCHMARK,
    embedder_variants.BENCHMARK,
    picklist_prior.BENCHMARK,
    detector_variants.BENCHMARK,
    monitoring.BENCHMARK,
    clips.BENCHMARK,
    chain.BENCHMARK,
)
