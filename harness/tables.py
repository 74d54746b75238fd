"""Markdown rows for each benchmark's result: what `laneguard bench` prints and appends to
``summary.md``, one function per benchmark, each taking the JSON result it summarises."""

from __future__ import annotations

from typing import Any


def catalog_table(result: dict[str, Any]) -> list[str]:
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


def sim_table(result: dict[str, Any]) -> list[str]:
    verdict = "yes" if result["meets_target"] else "NO"
    return [
        "| benchmark | measured | target | met |",
        "|---|---|---|---|",
        f"| simulator rendering, {result['resolution']}, 1 thread | "
        f"{result['frames_per_second']} frames/s ({result['ms_per_frame']} ms) | "
        f">= {result['target_fps']} frames/s | {verdict} |",
    ]


def node_table(result: dict[str, Any]) -> list[str]:
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
        "| peak RSS, `node replay`, raspberry-pi-5 profile "
        f"(int8 detector, the profile's embedder) | "
        f"{result['peak_rss_mb_int8_profile']} MB | < 400 MB |",
    ]


def counting_table(result: dict[str, Any]) -> list[str]:
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


def lanes_table(result: dict[str, Any]) -> list[str]:
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
        f"| scan without item: recorded (note or quiet entry); notes shown | "
        f"{result['scans_without_item_recorded']}; {pr('scan_without_item')} | - |",
        f"| false alerts per 100 honest transactions (of them notes) | "
        f"{result['false_alerts_per_100_honest']} ({result['notes_per_100_honest']}) | <= 1 |",
        f"| alerts per transaction; quiet entries per 100 honest | "
        f"{result['alerts_per_transaction']}; {result['quiet_entries_per_100_honest']} | - |",
        f"| items missed / counted extra per 100 true items ({result['items']} items) | "
        f"{result['items_missed_per_100']} / {result['items_counted_extra_per_100']} | - |",
        f"| alert latency, bagging to screen websocket | p50 {latency['p50']} ms, p99 "
        f"{latency['p99']} ms ({latency['n']} alerts) | p99 <= 300 ms |",
    ]


def outage_table(result: dict[str, Any]) -> list[str]:
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


def ingest_table(result: dict[str, Any]) -> list[str]:
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


def fanout_table(result: dict[str, Any]) -> list[str]:
    delay = result["ingest_to_console_ms"]
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| live alert fan-out to {result['consoles']} consoles, {result['alerts']} alerts | "
        f"{result['deliveries']}/{result['expected_deliveries']} delivered, ingest to console "
        f"p50 {delay['p50']} ms, p99 {delay['p99']} ms | p99 < 100 ms |",
    ]


def learning_table(result: dict[str, Any]) -> list[str]:
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


def update_table(result: dict[str, Any]) -> list[str]:
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


def retraining_table(result: dict[str, Any]) -> list[str]:
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


def body_limits_table(result: dict[str, Any]) -> list[str]:
    rows = [
        "| benchmark | answer | sent before it | peak memory growth | target |",
        "|---|---|---|---|---|",
    ]
    for side, label in (("store", "store server"), ("lane", "lane")):
        for name, run in result[side].items():
            rows.append(
                f"| 1 GB body to the {label}: {name.replace('_', ' ')} | {run['status']} | "
                f"{run['body_bytes_sent_before_answer'] / 2**20:.1f} MB | "
                f"{run['peak_growth_mb']} MB above idle ({run['idle_rss_mb']} MB) | < 100 MB |"
            )
    return rows


def embedder_variants_table(result: dict[str, Any]) -> list[str]:
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


def detector_variants_table(result: dict[str, Any]) -> list[str]:
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


def monitoring_table(result: dict[str, Any]) -> list[str]:
    lane, off = result["lane_scrape"], result["without_mqtt"]
    rows = [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| lane /metrics scrape ({lane['bytes']:,} bytes) | p50 {lane['p50_ms']} ms, "
        f"p99 {lane['p99_ms']} ms | < 10 ms |",
        f"| store /metrics scrape, during and after the load | "
        f"p50 {off['store_scrape']['p50_ms']} ms, p99 {off['store_scrape']['p99_ms']} ms "
        "| < 10 ms |",
        f"| ingest p99 at 500 transactions/s, no MQTT | {off['ingest']['latency_ms']['p99']} ms "
        f"({off['ingest']['transactions_per_s']}/s) | - |",
    ]
    on = result["with_mqtt"]
    if "skipped" in on:
        rows.append(f"| with MQTT | skipped: {on['skipped']} | - |")
    else:
        rows.append(
            f"| ingest p99 with MQTT events (1 alert per 10 transactions) | "
            f"{on['ingest']['latency_ms']['p99']} ms ({on['ingest']['transactions_per_s']}/s); "
            f"adds {result['mqtt_adds_to_ingest_p99_ms']} ms | adds < 5 ms |"
        )
    return rows


def clips_table(result: dict[str, Any]) -> list[str]:
    loop, worst, console = result["frame_loop"], result["worst_case"], result["console"]
    on = loop["runs"]["on"][-1]
    off_late = [r["frames_late"] for r in loop["runs"]["off"]]
    on_late = [r["frames_late"] for r in loop["runs"]["on"]]
    rss_on = max(r["peak_rss_mb"] for r in loop["runs"]["on"])
    rss_off = max(r["peak_rss_mb"] for r in loop["runs"]["off"])
    return [
        "| benchmark | measured | target |",
        "|---|---|---|",
        f"| lane frame loop at 30 frames/s with the till, clips off / on (median of "
        f"{len(loop['runs']['on'])} runs) | {loop['fps_off']} / {loop['fps_on']} frames/s "
        f"sustained ({loop['slowdown_pct']}% slower); late frames {off_late} / {on_late} of "
        f"{on['frames']} | within 5% |",
        f"| worst case: flat out, every item an alert, off / on | {worst['fps_off']} / "
        f"{worst['fps_on']} frames/s ({worst['slowdown_pct']}% slower; "
        f"{worst['runs']['on'][0]['clips_made']} clips made, "
        f"{worst['runs']['on'][0]['clips_dropped']} dropped) | - |",
        f"| clip ring memory, peak / cap | {on['ring_peak_mb']} / {on['ring_cap_mb']} MB | "
        "within the cap |",
        f"| making one clip (decode, masks, faces, box, VP8), encoder thread at nice 10 | "
        f"{on['encode_ms_per_clip']} ms | - |",
        f"| peak RSS of the bench process, clips off / on (holds ~100 MB of JPEG frames) | "
        f"{rss_off} / {rss_on} MB | lane < 400 MB |",
        f"| alert to clip stored at the store, {console['clips']} clips of {console['alerts']} "
        f"alerts in {console['seconds']:.0f} s | p50 {console['latency_s']['p50']} s, "
        f"p95 {console['latency_s']['p95']} s | p95 < 10 s |",
        f"| clip size ({console['clip_format']}) | median {console['clip_kb']['median']} KB, "
        f"max {console['clip_kb']['max']} KB | - |",
    ]


def chain_table(result: dict[str, Any]) -> list[str]:
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


def scenes_table(result: dict[str, Any]) -> list[str]:
    """`laneguard eval scenes`: one row per set (all photos, then each folder) and score."""

    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    boxes = "own_box_recall" in result
    rows = [
        "| set | score | absolute count error / products | photos counted exactly "
        "| own-box recall | merged boxes | precision |",
        "|---|---|---|---|---|---|---|",
    ]
    sets = [("all", result), *result["by_folder"].items()]
    for name, totals in sets:
        for score, run in (
            (result["new_track_score"], totals),
            (result["low_score_threshold"], totals["low_score"]),
        ):
            box_cells = (
                [
                    ratio(run["own_box_recall"]),
                    ratio(run["merged_box_share"]),
                    ratio(run["precision"]),
                ]
                if boxes
                else ["-", "-", "-"]
            )
            rows.append(
                f"| {name} ({run['photos']} photos, {run['products']} products) | {score} | "
                f"{ratio(run['count_abs_error_share'])} | "
                f"{run['exact_photos']} / {run['counted_photos']} | " + " | ".join(box_cells) + " |"
            )
    return rows
