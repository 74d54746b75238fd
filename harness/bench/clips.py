"""`laneguard bench clips`: alert clips cost the lane's frame loop little and keep its memory
bounded, and a clip reaches the store soon after its alert."""

from __future__ import annotations

from typing import Any

from harness.bench.benchmark import Benchmark


def run() -> dict[str, Any]:
    from harness.benchmarks import clips

    return clips.run()


def table(result: dict[str, Any]) -> list[str]:
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


BENCHMARK = Benchmark(
    name="clips",
    description="Alert clips: frame loop off vs on, ring memory, clip size, alert-to-console time.",
    run=run,
    table=table,
)
