"""`laneguard eval lanes`: simulated checkouts through a real lane, scored against ground truth.

Each scenario is played into a real Lane (pipeline, reconciliation, outbox) whose web server
runs, with a websocket client connected to its screen exactly as the lane screen is: frames are
rendered and handed to the lane in order, till events are posted at their times, and alerts are
timed until their message reaches the screen's socket.

Scores:
- checkout accuracy: transactions whose seen list (final codes of the items that went to
  bagging) equals the true list exactly, overall and for transactions of known products only;
- per alert type, precision and recall against the scenario's expected alerts (same type,
  subject within 1.5 s); an alert counts as raised if the screen showed it, even if a later
  scan or the final check took it back;
- false alerts per 100 honest transactions (scenarios that expect no alert), and of them the
  notes (scans without an item shown to the cashier) on their own;
- scans without an item recorded: the share of the scenarios' true scans-without-item that the
  transaction records, as a note or as a quiet entry (``Outcome.unseen_scans``);
- items missed and counted extra per 100 true items, over every transaction (the long
  ``mixed`` baskets included: what a lane misses on real baskets, which the short kinds hide);
- alert latency for unscanned items: stream time from the true crossing into bagging to the
  frame that raised it, plus wall time from that frame's hand-over to the websocket message.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.sync.client import connect

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.model_bundle import LaneModels
from checkout_node.outbox import Outbox
from checkout_node.reconcile.reconciler import Outcome
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from laneguard.serving import serve_in_thread
from simulator.recording import lane_inputs
from simulator.scenario import KINDS, Scenario, build_scenario
from simulator.scene import SceneRenderer
from simulator.store_look import StoreLook
from simulator.world import World

MATCH_S = 1.5
EVAL_KINDS = KINDS  # every kind, the long mixed baskets included
ALERT_TYPES = ("unscanned_item", "switch", "scan_without_item", "quantity_mismatch")


@dataclass
class CheckoutResult:
    kind: str
    seed: int
    exact: bool
    known_only: bool
    expects_alerts: bool
    true_codes: list[str]
    seen_codes: list[str | None]
    matched: Counter[str] = field(default_factory=Counter)
    raised: Counter[str] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    false_alerts: list[dict[str, Any]] = field(default_factory=list)
    # true scans-without-item, and those the transaction recorded (note or quiet entry)
    unseen_expected: int = 0
    unseen_recorded: int = 0
    quiet_entries: int = 0
    frames: int = 0
    seconds: float = 0.0


class ScreenListener:
    """A websocket client on the lane screen's socket, signed in as the kiosk is, noting when
    each alert arrives."""

    def __init__(self, url: str, access: LaneAccess) -> None:
        self.arrived: dict[str, float] = {}
        self._stack = ExitStack()
        cookie = {"Cookie": f"{access.screen_cookie_name}={access.screen_cookie}"}
        self._socket = self._stack.enter_context(connect(url, additional_headers=cookie))
        self._socket.recv(timeout=10)  # the state sent on connect
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        try:
            for text in self._socket:
                event = json.loads(text)
                if event.get("type") == "alert" and event.get("change") == "raised":
                    self.arrived.setdefault(event["alert"]["alert_id"], time.monotonic())
        except Exception:  # closed
            return

    def wait_for(self, alert_ids: list[str], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while any(a not in self.arrived for a in alert_ids) and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self._stack.close()
        self._thread.join(timeout=5)


def run_checkout(
    scenario: Scenario,
    world: World,
    models: LaneModels,
    catalog: LaneCatalog,
    work: Path,
    store: StoreLook | None = None,
) -> CheckoutResult:
    """One checkout; in ``store``'s look with the zones drawn for its camera when given."""
    hub = ScreenHub()
    outbox = Outbox(work / f"{scenario.kind}-{scenario.seed}.sqlite3")
    layout = scenario.layout
    zones = (
        LaneZones.standard(layout.width, layout.height)
        if store is None
        else LaneZones.from_mapping(store.zones(layout))
    )
    lane = Lane("eval", LanePipeline(models, zones), catalog, outbox, hub.publish)
    handed_over: dict[float, float] = {}  # frame time -> monotonic time it was handed over
    events = sorted(lane_inputs(scenario), key=lambda e: e.t)
    renderer = SceneRenderer(scenario, world, photo_splits=("test",), store=store)
    started = time.perf_counter()
    app = create_lane_app(lane, hub, live_clock=False)
    with serve_in_thread(app) as url:
        listener = ScreenListener(url.replace("http", "ws") + "/ws/screen", app.services.access)
        for index in range(scenario.n_frames):
            t = index / scenario.fps
            while events and events[0].t <= t:
                lane.on_input(events.pop(0))
            frame, _ = renderer.render(index)
            handed_over[t] = time.monotonic()
            lane.process_frame(frame, t)
        for event in events:
            lane.on_input(event)
        if lane.transaction is not None:
            lane.end_transaction(scenario.duration, reason="eval end")
        outcome = lane.last_outcome
        assert outcome is not None
        alerts = _shown_alerts(outcome)
        listener.wait_for([a["alert_id"] for a in alerts])
        listener.close()
    seconds = time.perf_counter() - started
    outbox.close()
    seen = outcome.seen_codes
    true_codes = list(scenario.true_items)
    result = CheckoutResult(
        scenario.kind,
        scenario.seed,
        sorted(true_codes) == sorted(c or "" for c in seen),
        not scenario.new_products,
        bool(scenario.expected_alerts),
        true_codes,
        seen,
        frames=scenario.n_frames,
        seconds=seconds,
    )
    _score_alerts(result, scenario, alerts, listener.arrived, handed_over)
    _score_unseen_scans(result, scenario, outcome)
    return result


def _score_unseen_scans(result: CheckoutResult, scenario: Scenario, outcome: Outcome) -> None:
    """Whether each true scan without an item is recorded in the transaction, as a note or
    as a quiet entry, at that scan's time."""
    times = {scan.event_id: scan.t for scan in outcome.scans}
    recorded = [times[e] for e in outcome.unseen_scans if e in times]
    noted = {a.scan_event_id for a in outcome.alerts if a.type == "scan_without_item"}
    result.quiet_entries = sum(e not in noted for e in outcome.unseen_scans)
    truth = [e.t for e in scenario.expected_alerts if e.type == "scan_without_item"]
    result.unseen_expected = len(truth)
    for t in truth:
        near = [r for r in recorded if abs(r - t) <= MATCH_S]
        if near:
            recorded.remove(min(near, key=lambda r: abs(r - t)))
            result.unseen_recorded += 1


def _shown_alerts(outcome: Outcome) -> list[dict[str, Any]]:
    """Every alert the screen showed, with the time of what it is about (the item's crossing
    into bagging, or the scan's time)."""
    crossed = {entry["track_id"]: entry["crossed_s"] for entry in outcome.seen}
    scanned = {scan.event_id: scan.t for scan in outcome.scans}
    shown = []
    for alert in outcome.alerts:
        data = alert.to_json()
        data["raised_s"] = alert.raised_s
        data["subject_s"] = (
            scanned.get(alert.scan_event_id or "", alert.raised_s)
            if alert.type == "scan_without_item"
            else crossed.get(alert.track_id, alert.raised_s)
        )
        shown.append(data)
    return shown


def _score_alerts(
    result: CheckoutResult,
    scenario: Scenario,
    alerts: list[dict[str, Any]],
    arrived: dict[str, float],
    handed_over: dict[float, float],
) -> None:
    expected = list(scenario.expected_alerts)
    result.expected = Counter(e.type for e in expected)
    free = list(expected)
    for alert in sorted(alerts, key=lambda a: a["subject_s"]):
        result.raised[alert["type"]] += 1
        candidates = [
            e for e in free if e.type == alert["type"] and abs(e.t - alert["subject_s"]) <= MATCH_S
        ]
        if not candidates:
            result.false_alerts.append(
                {k: alert[k] for k in ("type", "subject_s", "seen_code", "scanned_code")}
            )
            continue
        best = min(candidates, key=lambda e: abs(e.t - alert["subject_s"]))
        free.remove(best)
        result.matched[alert["type"]] += 1
        if alert["type"] == "unscanned_item" and alert["alert_id"] in arrived:
            frame_t = alert["raised_s"]
            wall = arrived[alert["alert_id"]] - handed_over.get(frame_t, arrived[alert["alert_id"]])
            result.latencies_ms.append(1000 * (max(frame_t - best.t, 0.0) + wall))


def evaluate_lanes(
    models: LaneModels,
    scenarios: int = 5,
    seed: int = 0,
    fps: float = 30.0,
    produce_photos: Path | None = None,
    kinds: tuple[str, ...] = EVAL_KINDS,
    progress: Callable[[str], None] = print,
    store: StoreLook | None = None,
) -> dict[str, Any]:
    world = World.from_catalog(produce_photos=produce_photos)
    catalog = LaneCatalog.from_file()
    results: list[CheckoutResult] = []
    with tempfile.TemporaryDirectory(prefix="laneguard-eval-lanes-") as tmp:
        for kind in kinds:
            for n in range(scenarios):
                scenario = build_scenario(kind, seed + n, world, fps=fps)
                result = run_checkout(scenario, world, models, catalog, Path(tmp), store)
                results.append(result)
                progress(
                    f"{kind} seed {seed + n}: {'exact' if result.exact else 'NOT exact'}, "
                    f"alerts raised {dict(result.raised)} expected {dict(result.expected)}"
                )
    return summarise(results, fps)


def summarise(results: list[CheckoutResult], fps: float) -> dict[str, Any]:
    def share(values: list[bool]) -> float | None:
        return round(sum(values) / len(values), 4) if values else None

    raised: Counter[str] = Counter()
    matched: Counter[str] = Counter()
    expected: Counter[str] = Counter()
    for r in results:
        raised.update(r.raised)
        matched.update(r.matched)
        expected.update(r.expected)
    honest = [r for r in results if not r.expects_alerts]
    latencies = [ms for r in results for ms in r.latencies_ms]
    true_items = sum(len(r.true_codes) for r in results)
    missed = sum(max(0, len(r.true_codes) - len(r.seen_codes)) for r in results)
    extra = sum(max(0, len(r.seen_codes) - len(r.true_codes)) for r in results)
    unseen_expected = sum(r.unseen_expected for r in results)

    def per_100_honest(count: int) -> float | None:
        return round(100 * count / len(honest), 2) if honest else None

    per_kind: dict[str, Any] = {}
    for kind in dict.fromkeys(r.kind for r in results):
        mine = [r for r in results if r.kind == kind]
        per_kind[kind] = {"transactions": len(mine), "exact": sum(r.exact for r in mine)}
    return {
        "transactions": len(results),
        "fps_of_video": fps,
        "checkout_accuracy": share([r.exact for r in results]),
        "checkout_accuracy_known_products": share([r.exact for r in results if r.known_only]),
        "alerts": {
            t: {
                "expected": expected[t],
                "raised": raised[t],
                "precision": round(matched[t] / raised[t], 4) if raised[t] else None,
                "recall": round(matched[t] / expected[t], 4) if expected[t] else None,
            }
            for t in ALERT_TYPES
        },
        "honest_transactions": len(honest),
        "false_alerts_per_100_honest": per_100_honest(sum(sum(r.raised.values()) for r in honest)),
        "notes_per_100_honest": per_100_honest(sum(r.raised["scan_without_item"] for r in honest)),
        "quiet_entries_per_100_honest": per_100_honest(sum(r.quiet_entries for r in honest)),
        "alerts_per_transaction": round(
            sum(sum(r.raised.values()) for r in results) / len(results), 3
        )
        if results
        else None,
        "scans_without_item_recorded": round(
            sum(r.unseen_recorded for r in results) / unseen_expected, 4
        )
        if unseen_expected
        else None,
        "items": true_items,
        "items_missed_per_100": round(100 * missed / true_items, 2) if true_items else None,
        "items_counted_extra_per_100": round(100 * extra / true_items, 2) if true_items else None,
        "alert_latency_ms": {
            "p50": round(float(np.percentile(latencies, 50)), 1) if latencies else None,
            "p99": round(float(np.percentile(latencies, 99)), 1) if latencies else None,
            "n": len(latencies),
        },
        "pipeline_fps": round(
            sum(r.frames for r in results) / max(sum(r.seconds for r in results), 1e-9), 1
        ),
        "per_kind": per_kind,
        "not_exact": [
            {"kind": r.kind, "seed": r.seed, "true": r.true_codes, "seen": r.seen_codes}
            for r in results
            if not r.exact
        ][:15],
        "false_alerts": [
            {"kind": r.kind, "seed": r.seed, **a} for r in results for a in r.false_alerts
        ][:15],
    }
