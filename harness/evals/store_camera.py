"""`laneguard bench store-camera`: the detector learns a store's camera it has never seen, end
to end through a real lane, a real store server and one slow-path pass (issue #35).

The store is a simulator "store look" (``simulator.store_look``): its own belt and counter,
light, camera height and tilt. Its one lane runs the shipped bundle with detection frames on
(privacy filter, daily quota, outbox) and the zones an installer would draw for that camera,
and works through honest checkouts; after each one its outbox is delivered to the store. Then
the store's trainer makes one pass (`train run`: the store's crops and camera frames, the gate,
publishing), and the candidate it writes is scored against production on checkouts of the same
store the lane never saw:

- products with a box of their own (IoU 0.5, the new-track score) on held-out frames of the
  store look, and on the simulator's own look (what the store's camera must not cost the rest);
- `eval lanes` in the store look (checkout accuracy, alerts), and production's in the
  simulator's own look, which the store's should come within 0.03 of.

The lane's frames are one day's worth: the daily quota (200 frames) is what a store collects
from one lane in a day, so more checkouts than fill it add crops but no frames.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.evals.scenes import lane_detector, product_boxes, score_boxes
from laneguard.serving import serve_in_thread

VISIBLE = 0.5  # a product this much in view must get a box of its own (as the frame keeper's)
NEW_TRACK_SCORE = 0.5  # the tracker's new-track score
CUSTOMER_GAP_S = 5.0  # stream time between one checkout's end and the next's start
STORE_RATE = 600  # frames a minute the bench's store takes from its lane (see run())


@dataclass(frozen=True)
class StoreCameraConfig:
    """The measurement's size; the defaults take about half an hour on 2 CPU cores."""

    look: str | None = None  # None: simulator.store_look.DEFAULT_STORE_LOOK
    # Checkouts the lane works through before the pass: in the default look about a third are
    # honest, and the lane's daily frame quota (200) is spent after about 60.
    transactions: int = 60
    held_out_checkouts: int = 12  # honest checkouts of the store no model saw, for scoring
    frame_step: int = 8  # every this many frames of a held-out checkout is scored
    lane_checkouts: int = 1  # `eval lanes` checkouts of each kind, per bundle and look (0: none)
    fps: float = 15.0
    embed_epochs: int = 1  # the pass's embedder step (not what this measures)
    detector_epochs: int = 5  # the slow path's default
    produce_photos: Path | None = None
    seed: int = 0


# --- the store and its lane ------------------------------------------------------------------


@dataclass
class _LaneDay:
    """What the lane's day in the store produced."""

    checkouts: int = 0
    honest: int = 0
    frames_queued: int = 0
    frames_dropped: int = 0
    seconds: float = 0.0


def _play(lane: Any, scenario: Any, renderer: Any, start: float) -> tuple[Any, float]:
    """One checkout through ``lane``, frames and till events in stream order, the scenario's
    time shifted to ``start`` (a lane's stream time runs on from one customer to the next);
    returns the outcome (None when no transaction ran) and the stream time after it."""
    from simulator.recording import lane_inputs

    before = lane.last_outcome
    shifted = (e.model_copy(update={"t": e.t + start}) for e in lane_inputs(scenario))
    events = sorted(shifted, key=lambda e: e.t)
    t = start
    for index in range(scenario.n_frames):
        t = start + index / scenario.fps
        while events and events[0].t <= t:
            lane.on_input(events.pop(0), t)
        lane.process_frame(renderer.render(index)[0], t)
    for event in events:
        lane.on_input(event, t)
    end = start + scenario.duration
    if lane.transaction is not None:
        lane.end_transaction(end, reason="eval end")
    outcome = lane.last_outcome
    return (None if outcome is before else outcome), end + CUSTOMER_GAP_S


def _deliver(uploader: Any, outbox: Any, timeout_s: float = 120.0) -> None:
    """Send everything in the outbox, waiting out the store's refusals until ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while any(outbox.depth().values()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the lane's outbox did not empty: {outbox.depth()}")
        if uploader.deliver_once().sent == 0:
            time.sleep(0.2)


def _lane_day(
    config: StoreCameraConfig,
    look: Any,
    world: Any,
    root: Path,
    store_url: str,
    token: str,
    progress: Callable[[str], None],
) -> _LaneDay:
    """The store's lane through ``config.transactions`` honest checkouts, each delivered."""
    from checkout_node.catalog import LaneCatalog
    from checkout_node.frame_keeper import FrameKeeper, FrameKeeperConfig
    from checkout_node.frame_sender import FrameSender
    from checkout_node.lane import Lane
    from checkout_node.messages import StreamClock
    from checkout_node.model_bundle import load_models
    from checkout_node.outbox import Outbox
    from checkout_node.privacy import PrivacyFilter
    from checkout_node.uploader import Enrolment, Uploader
    from checkout_node.vision.counting import LaneZones
    from checkout_node.vision.pipeline import LanePipeline
    from harness.demo import DEMO_CUSTOMER_MASK
    from simulator.scenario import LaneLayout, build_scenario
    from simulator.scene import SceneRenderer
    from simulator.store_look import clip_polygon, warp_points

    lane_dir = root / "lane"
    outbox = Outbox(lane_dir / "outbox.sqlite3")
    clock = StreamClock.now()
    # The customer's side masked where this camera sees it, as the installer would draw it.
    layout = LaneLayout()
    warp = look.camera_warp(layout.width, layout.height)
    mask = clip_polygon(warp_points(warp, DEMO_CUSTOMER_MASK), layout.width, layout.height)
    privacy = PrivacyFilter([[(x, y) for x, y in mask]])
    sender = FrameSender("lane-1", outbox, clock, privacy)
    keeper = FrameKeeper(sender, FrameKeeperConfig(), lane_dir / "frames-quota.json")
    zones = LaneZones.from_mapping(look.zones(layout))
    lane = Lane(
        "lane-1",
        LanePipeline(load_models(), zones),
        LaneCatalog.from_file(),
        outbox,
        clock=clock,
        frames=keeper,
    )
    uploader = Uploader(outbox, store_url, enrolment=Enrolment(token, lane_dir, "lane-1"))
    day = _LaneDay()
    started, stream_t = time.perf_counter(), 0.0
    try:
        for n in range(config.transactions):
            scenario = build_scenario("honest", config.seed + n, world, fps=config.fps)
            renderer = SceneRenderer(scenario, world, store=look)
            outcome, stream_t = _play(lane, scenario, renderer, stream_t)
            day.checkouts += 1
            day.honest += bool(outcome is not None and outcome.honest)
            if not sender.drain():
                raise TimeoutError("the lane's frame sender did not drain")
            _deliver(uploader, outbox)
            if (n + 1) % 10 == 0:
                progress(
                    f"lane: {n + 1} checkouts, {day.honest} honest, "
                    f"{sender.stats.queued} frames sent"
                )
    finally:
        day.frames_queued, day.frames_dropped = sender.stats.queued, sender.stats.dropped
        day.seconds = round(time.perf_counter() - started, 1)
        uploader.stop()
        sender.close()
        lane.pipeline.close()
        outbox.close()
    return day


def _one_pass(
    config: StoreCameraConfig,
    engine: Any,
    settings: Any,
    work: Path,
    progress: Callable[[str], None],
) -> tuple[Path, dict[str, Any], float]:
    """The store trainer's pass: returns the candidate, its report and the seconds it took."""
    from trainer.finetune import TrainRunConfig
    from trainer.store_training import StoreTrainer

    run_config = TrainRunConfig(
        embed_epochs=config.embed_epochs,
        detector_epochs=config.detector_epochs,
        seed=config.seed,
        produce_photos=config.produce_photos,
    )
    started = time.perf_counter()
    trainer = StoreTrainer(engine, settings, run_config, work, publish=True)
    result = trainer.run_once(progress)
    return result.bundle, result.report, round(time.perf_counter() - started, 1)


# --- scoring -----------------------------------------------------------------------------------


@dataclass
class _Recall:
    products: int = 0
    own: int = 0
    detections: int = 0
    merged: int = 0

    def add(self, detections: np.ndarray, truth: np.ndarray) -> None:
        score = score_boxes(detections, truth)
        self.products += score.truths
        self.own += score.own
        self.detections += score.detections
        self.merged += score.merged

    def summary(self) -> dict[str, Any]:
        def share(part: int, whole: int) -> float | None:
            return round(part / whole, 4) if whole else None

        return {
            **asdict(self),
            "own_box_recall": share(self.own, self.products),
            "merged_box_share": share(self.merged, self.detections),
            "precision": share(self.own, self.detections),
        }


def held_out_frames(
    config: StoreCameraConfig, world: Any, look: Any | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Frames of honest checkouts no lane played (seeds after the lane's), with their
    products' true boxes (at least ``VISIBLE`` in view): in ``look``, or the simulator's own
    look when None."""
    from simulator.scenario import CLASS_IDS, build_scenario
    from simulator.scene import SceneRenderer

    frames = []
    first = config.seed + 100_000
    for n in range(config.held_out_checkouts):
        scenario = build_scenario("honest", first + n, world, fps=config.fps)
        renderer = SceneRenderer(scenario, world, photo_splits=("test",), store=look)
        for index in range(0, scenario.n_frames, config.frame_step):
            image, boxes = renderer.render(index)
            truth = np.array(
                [
                    [b.x1, b.y1, b.x2, b.y2]
                    for b in boxes
                    if b.cls == CLASS_IDS["product"] and b.visible >= VISIBLE
                ],
                np.float64,
            ).reshape(-1, 4)
            if len(truth):
                frames.append((image, truth))
    return frames


def as_production_runs(bundle: Path) -> Any:
    """``bundle``'s models with its detector at the size and precision the shipped bundle's
    lane runs (no profile), so production and a candidate are scored on the same variant."""
    from checkout_node.model_bundle import load_models
    from laneguard.bundle import SHIPPED_BUNDLE

    chosen = load_models(SHIPPED_BUNDLE).detector
    return load_models(bundle, detector_precision=chosen.precision, detector_size=chosen.input_size)


def box_recall(models: Any, frames: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The lane detector of ``models`` (checkout_node.model_bundle.LaneModels) on ``frames``."""
    detector = lane_detector(models.path(models.detector), models.threads)
    tally = _Recall()
    for image, truth in frames:
        tally.add(product_boxes(detector.detect(image), NEW_TRACK_SCORE), truth)
    return {"detector": models.detector.file, **tally.summary()}


def _lanes(
    bundle: Path, config: StoreCameraConfig, look: Any | None, progress: Callable[[str], None]
) -> dict[str, Any]:
    """`eval lanes` with the bundle's detector at the size and precision production runs."""
    from harness.evals.lanes import evaluate_lanes

    result = evaluate_lanes(
        as_production_runs(bundle),
        scenarios=config.lane_checkouts,
        seed=config.seed + 200_000,
        fps=config.fps,
        produce_photos=config.produce_photos,
        progress=progress,
        store=look,
    )
    keys = ("checkout_accuracy", "false_alerts_per_100_honest", "alerts", "items")
    return {key: result[key] for key in keys if key in result}


# --- the whole measurement -------------------------------------------------------------------


def run(
    config: StoreCameraConfig | None = None, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Lane day, one pass, scores before and after; the JSON `bench store-camera` reports."""
    from laneguard.bundle import SHIPPED_BUNDLE
    from product_db.db import make_engine
    from simulator.store_look import DEFAULT_STORE_LOOK, store_look
    from simulator.world import World
    from store_server.app import create_app
    from store_server.db import migrate
    from store_server.lanes import issue_enrolment_token
    from store_server.settings import StoreSettings

    config = config or StoreCameraConfig()
    look = store_look(config.look or DEFAULT_STORE_LOOK)
    world = World.from_catalog(produce_photos=config.produce_photos)
    with tempfile.TemporaryDirectory(prefix="laneguard-store-camera-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'store.sqlite3'}"
        engine = make_engine(url)
        migrate(engine)
        token = issue_enrolment_token(engine, "lane-1", created_by="bench")
        # The lane's day is compressed into minutes: the store takes its frames as fast as the
        # lane makes them (the per-minute limit guards against a flood, not a day's quota).
        settings = StoreSettings(
            database_url=url, data_dir=root / "store", lane_frames_per_minute=STORE_RATE
        )
        with serve_in_thread(create_app(settings)) as store_url:
            day = _lane_day(config, look, world, root, store_url, token, progress)
            progress(f"lane day done: {asdict(day)}")
            frames_stored = _stored_frames(engine)
            candidate, report, pass_s = _one_pass(
                config, engine, settings, root / "trainer", progress
            )
        engine.dispose()

        progress("scoring held-out frames")
        store_frames = held_out_frames(config, world, look)
        plain_frames = held_out_frames(config, world, None)
        recall = {
            name: {
                "store_look": box_recall(models, store_frames),
                "simulator_look": box_recall(models, plain_frames),
            }
            for name, models in (
                ("production", as_production_runs(SHIPPED_BUNDLE)),
                ("candidate", as_production_runs(candidate)),
            )
        }
        progress(f"recall: {recall}")
        sides = (
            ("production_simulator_look", SHIPPED_BUNDLE, None),
            ("production_store_look", SHIPPED_BUNDLE, look),
            ("candidate_store_look", candidate, look),
        )
        lanes = {
            name: _lanes(bundle, config, side_look, progress)
            for name, bundle, side_look in sides
            if config.lane_checkouts > 0
        }
    return {
        "look": look.name,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "lane_day": asdict(day),
        "frames_stored": frames_stored,
        "camera_frames": report.get("harvest", {}).get("camera_frames"),
        "pass_seconds": pass_s,
        "gate": report.get("gate"),
        "held_out_frames": {"store_look": len(store_frames), "simulator_look": len(plain_frames)},
        "recall": recall,
        "lanes": lanes,
    }


def _stored_frames(engine: Any) -> dict[str, int]:
    """The store's detection frames by reason."""
    from sqlmodel import Session, func, select

    from store_server.models import DetectionFrame

    with Session(engine) as session:
        rows = session.exec(
            select(DetectionFrame.reason, func.count()).group_by(DetectionFrame.reason)
        ).all()
    return {str(reason): int(n) for reason, n in rows}
