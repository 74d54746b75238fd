"""`laneguard bench ...`: the speed and size targets, measured, written as JSON and markdown.

Each benchmark lives next to the code it measures and returns a dict; this module runs them,
writes ``<out>/<name>.json`` and appends a row per result to ``<out>/summary.md``.
"""

from __future__ import annotations

import json
import os
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


def _node_pipeline() -> dict[str, Any]:
    from checkout_node import benchmark

    return benchmark.run()


def _markdown_node(result: dict[str, Any]) -> list[str]:
    fp32, int8 = result["ours"]["fp32"], result["ours"]["int8"]
    every2 = result["ours"]["fp32_interval2"]
    peer = result["peer_ultralytics_track_objectcounter"]
    true_items = result["video"]["true_items"]
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| lane pipeline, 640x480, detector 320 fp32, 2 cores | {fp32['fps_end_to_end']} frames/s "
        f"({fp32['ms_per_frame']} ms/frame, {100 * fp32['overhead_share']:.0f}% outside "
        "session.run) | >= 30 frames/s, <= 20% |",
        f"| lane pipeline, detector 320 int8 | {int8['fps_end_to_end']} frames/s "
        f"({100 * int8['overhead_share']:.0f}% outside session.run) | - |",
        f"| ultralytics track + ObjectCounter, same fp32 model | {peer['fps']} frames/s | - |",
        f"| speed-up over the peer (median of {result['rounds']} alternating rounds: "
        f"{', '.join(str(r) for r in result['speedup_per_round'])}) | "
        f"{result['speedup_vs_peer_fp32']}x | >= 2x |",
        f"| lane pipeline fp32, detector on every other frame (rounds: "
        f"{', '.join(str(r) for r in result['speedup_interval2_per_round'])}) | "
        f"{every2['fps_end_to_end']} frames/s, {result['speedup_vs_peer_fp32_detect_interval2']}x"
        " the peer | >= 2x |",
        f"| counts vs {true_items} true items: ours fp32 / int8 / fp32 every other frame / peer "
        f"| {fp32['count']} / {int8['count']} / {every2['count']} / {peer['count']} "
        f"| {true_items} |",
        f"| peak RSS, `node replay`, raspberry-pi-5 profile, int8 detector and embedder | "
        f"{result['peak_rss_mb_int8_profile']} MB | < 400 MB |",
    ]


def _node_counting() -> dict[str, Any]:
    """Both ways the lane can run: the detector on every frame, and on every other frame."""
    from checkout_node.models import load_models
    from simulator.lane_eval import evaluate_counting

    photos = os.environ.get("LANEGUARD_PRODUCE_PHOTOS", "../shared/data/grocery-produce")
    produce = Path(photos) if (Path(photos) / "images").is_dir() else None
    models = load_models()
    return {
        f"detect_interval_{interval}": evaluate_counting(
            models,
            transactions=50,
            produce_photos=produce,
            progress=lambda line: click.echo(line),
            detect_interval=interval,
        )
        for interval in (1, 2)
    }


def _markdown_counting(result: dict[str, Any]) -> list[str]:
    rows = ["| benchmark | measured | target |", "|---|---|---|"]
    for name, run in result.items():
        every = "every frame" if run["detect_interval"] == 1 else "every other frame"
        rows += [
            f"| counting, detector on {every}, {run['transactions']} mixed transactions "
            f"({run['true_items']} items) | {run['missed_visible']} missed visible, "
            f"{run['extra_counts']} double/extra counts, "
            f"{run['missed_hidden_under_other_items']} missed hidden under other items "
            "| 0 and 0 |",
            f"| riding item's own box / one box around the pair ({name}, "
            f"{run['riding_pair_frames']['frames']} detected frames) | "
            f"{run['riding_pair_frames']['riding_item_own_box']} / "
            f"{run['riding_pair_frames']['one_box_around_both']} | - |",
            f"| identity top-1 of counted known items ({name}) | {run['identity_top1']} | - |",
        ]
    return rows


def _node_lanes() -> dict[str, Any]:
    from checkout_node.models import load_models
    from simulator.checkout_eval import evaluate_lanes

    photos = os.environ.get("LANEGUARD_PRODUCE_PHOTOS", "../shared/data/grocery-produce")
    produce = Path(photos) if (Path(photos) / "images").is_dir() else None
    return evaluate_lanes(
        load_models(), scenarios=5, produce_photos=produce, progress=lambda line: click.echo(line)
    )


def _markdown_lanes(result: dict[str, Any]) -> list[str]:
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
        f"| scan without item | {pr('scan_without_item')} | - |",
        f"| false alerts per 100 honest transactions | {result['false_alerts_per_100_honest']} | "
        "<= 1 |",
        f"| alert latency, bagging to screen websocket | p50 {latency['p50']} ms, p99 "
        f"{latency['p99']} ms ({latency['n']} alerts) | p99 <= 300 ms |",
    ]


def _node_outage() -> dict[str, Any]:
    from checkout_node import outage_benchmark

    return outage_benchmark.run(transactions=200, outage_s=600.0)


def _markdown_outage(result: dict[str, Any]) -> list[str]:
    stored = result["stored"]
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| store server down {result['outage_s']} s during {result['transactions']} "
        f"transactions | {stored['TransactionRecord']} transactions and {stored['AlertRecord']} of "
        f"{result['expected']['alerts']} alerts stored once; outbox peaked at "
        f"{result['max_outbox_depth']} messages, its backlog delivered "
        f"{result['backlog_delivered_after_return_s']} s after the server returned | "
        "nothing lost |",
    ]


def _server_ingest() -> dict[str, Any]:
    from store_server import benchmark

    return benchmark.run_ingest()


INGEST_TARGET = ">= 500/s, p99 < 100 ms"


def _markdown_ingest(result: dict[str, Any]) -> list[str]:
    rows = ["| benchmark | measured | target |", "|---|---|---|"]
    for label, key, target in (
        (
            "500 transactions/s offered, one per request",
            "paced_500_per_s",
            ">= 500/s, p99 < 100 ms",
        ),
        ("as fast as answered, one per request", "flat_out_1_per_request", "-"),
        ("as fast as answered, ten per request", "flat_out_10_per_request", "-"),
    ):
        run = result[key]
        latency = run["latency_ms"]
        rows.append(
            f"| ingest, {run['lanes']} concurrent lanes, {label}, SQLite | "
            f"{run['transactions_per_s']} transactions/s over {run['seconds']} s "
            f"({run['errors']} errors), request latency p50 {latency['p50']} ms, p99 "
            f"{latency['p99']} ms | {target} |"
        )
    return rows


def _server_fanout() -> dict[str, Any]:
    from store_server import benchmark

    return benchmark.run_fanout()


def _markdown_fanout(result: dict[str, Any]) -> list[str]:
    delay = result["ingest_to_console_ms"]
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| live alert fan-out to {result['consoles']} consoles, {result['alerts']} alerts | "
        f"{result['deliveries']}/{result['expected_deliveries']} delivered, ingest to console "
        f"p50 {delay['p50']} ms, p99 {delay['p99']} ms | p99 < 100 ms |",
    ]


def _learning() -> dict[str, Any]:
    from laneguard import learning_eval

    return {
        kind: learning_eval.run(kind=kind, progress=lambda line: click.echo(line))
        for kind in learning_eval.KINDS
    }


def _markdown_learning(result: dict[str, Any]) -> list[str]:
    rows = ["| benchmark | measured | target |", "|---|---|---|"]
    for kind, run in result.items():
        product = run["product"]
        before = [t["score"] for t in run["transactions"] if not t["recognised"]]
        rows.append(
            f"| {kind.replace('_', ' ')} ({product['name']}) learned from honest transactions, "
            f"real lane + store server | not recognised before (similarity "
            f"{min(before)}-{max(before)}); recognised after "
            f"{run['recognised_after_honest_transactions']} honest transactions; gallery at the "
            f"lane {run['seconds_from_delivery_to_lane_gallery']} s after delivery; skip-scan "
            f"alert names it: {run['skip_scan_alert_names_product']} | within 60 s |"
        )
    return rows


def _lane_update() -> dict[str, Any]:
    from checkout_node import update_benchmark

    return update_benchmark.run()


def _markdown_update(result: dict[str, Any]) -> list[str]:
    steps = ", ".join(f"{k} {v} s" for k, v in result["seconds_per_step"].items())
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| lane takes a new {result['bundle_mb']} MB bundle from its store server | "
        f"{result['seconds_to_live']} s to live ({steps}) | - |",
        f"| canary offered a bundle that fails its smoke test | {result['broken_bundle'][:60]}; "
        f"rollout {result['broken_rollout_result']} {result['seconds_from_offer_to_rollback']} s "
        "after the offer | never live, halted |",
    ]


def _retraining() -> dict[str, Any]:
    from trainer import retraining_benchmark

    photos = os.environ.get("LANEGUARD_PRODUCE_PHOTOS", "../shared/data/grocery-produce")
    produce = Path(photos) if (Path(photos) / "images").is_dir() else None
    return retraining_benchmark.run(produce, progress=lambda line: click.echo(line))


def _markdown_retraining(result: dict[str, Any]) -> list[str]:
    def mean(rows: dict[str, dict[str, float | None]], side: str) -> str:
        values = [float(x) for x in (v[side] for v in rows.values()) if x is not None]
        return f"{sum(values) / len(values):.2f}" if values else "-"

    rows = ["| benchmark | production | candidate | target |", "|---|---|---|---|"]
    for kind in ("new_products", "packaging_changes"):
        group = result[kind]
        rows.append(
            f"| held-out crops of {len(group)} {kind.replace('_', ' ')}: top-1 (mean) | "
            f"{mean(group, 'production')} | {mean(group, 'candidate')} | learned (>= 0.8) |"
        )
    for check in result["checks"]:
        if check["check"].startswith("new product"):
            continue
        rows.append(
            f"| {check['check'].split(' ')[0]} | {check['production']} | {check['candidate']} | "
            "no regression |"
        )
    verdict = "passed" if result["passed"] else "refused: " + "; ".join(result["failed"])
    rows.append(f"| gate, one `train run` pass | | {verdict} in {result['seconds']} s | - |")
    return rows


BENCHMARKS: dict[str, tuple[Callable[..., dict[str, Any]], Callable[[dict[str, Any]], list[str]]]]
BENCHMARKS = {
    "catalog-import": (_catalog_import, _markdown_row_catalog),
    "sim-render": (_sim_render, _markdown_sim),
    "node-pipeline": (_node_pipeline, _markdown_node),
    "node-counting": (_node_counting, _markdown_counting),
    "node-lanes": (_node_lanes, _markdown_lanes),
    "node-outage": (_node_outage, _markdown_outage),
    "server-ingest": (_server_ingest, _markdown_ingest),
    "server-fanout": (_server_fanout, _markdown_fanout),
    "learning": (_learning, _markdown_learning),
    "lane-update": (_lane_update, _markdown_update),
    "retraining": (_retraining, _markdown_retraining),
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


OUT_OPTION = click.option(
    "--out", type=click.Path(path_type=Path), default=Path("bench-results"), show_default=True
)

# One-line descriptions for `laneguard bench --help`; each benchmark is also its own command.
DESCRIPTIONS = {
    "catalog-import": "Import a synthetic 100,000-product catalog into a fresh SQLite database.",
    "sim-render": "Render a minute of simulated lane video on one thread.",
    "node-pipeline": "Lane pipeline speed, overhead, counts and memory, against ultralytics.",
    "node-counting": "Counting accuracy over 50 simulated transactions of 5-40 items.",
    "node-lanes": "Checkout accuracy, alert precision/recall and latency: 5 checkouts per kind.",
    "node-outage": "200 transactions with the store server down for 10 minutes: nothing lost.",
    "server-ingest": "Store server ingest: 50 concurrent lanes, transactions/s and latency.",
    "server-fanout": "Live alert fan-out to 50 open consoles: ingest-to-console latency.",
    "learning": "New product and new packaging learned from honest transactions, end to end.",
    "lane-update": "A lane takes a bundle from its store (download, checks, smoke test, swap).",
    "retraining": "The slow path: fine-tune from the shipped bundle on harvested crops, gated.",
}


def _register(name: str) -> None:
    runner, table = BENCHMARKS[name]

    @bench.command(name, help=DESCRIPTIONS[name])
    @OUT_OPTION
    def command(out: Path) -> None:
        result = runner()
        _write(out, name, result, table(result))


for _name in BENCHMARKS:
    _register(_name)


@bench.command("all")
@OUT_OPTION
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
