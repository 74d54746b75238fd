"""Detection frames on the lane (issue #35): rendered checkouts through a real lane and pipeline;
what reaches the outbox is read back as the store would get it."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from checkout_node.catalog import LaneCatalog
from checkout_node.frame_keeper import FrameKeeper, FrameKeeperConfig, KeptFrame
from checkout_node.frame_sender import FrameSender
from checkout_node.lane import Lane
from checkout_node.messages import StreamClock
from checkout_node.metrics import LaneMetrics
from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.outbox import Outbox
from checkout_node.privacy import FaceDetector, PrivacyFilter
from checkout_node.settings import LaneSettings
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from laneguard.bundle import SHIPPED_BUNDLE
from laneguard.wire import FrameBox, FrameMessage
from simulator.recording import lane_inputs
from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World
from tests.checkout_node.test_clips import FACE_AT, MASK

Paste = Callable[[np.ndarray], np.ndarray]


@pytest.fixture(scope="module")
def models() -> LaneModels:
    return load_models(SHIPPED_BUNDLE, profile="x86-2core")


@pytest.fixture(scope="module")
def world() -> World:
    return World.from_catalog()


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    from importlib.resources import files

    photo = cv2.imread(str(files("skimage") / "data/astronaut.png"))
    assert photo is not None
    return cv2.resize(photo[0:260, 110:340], (160, 180))


def with_face(face: np.ndarray) -> Paste:
    """A customer's face at the frame's edge and a bright patch where a privacy mask lies."""

    def paste(frame: np.ndarray) -> np.ndarray:
        out = frame.copy()
        out[0:120, 0:160] = (230, 230, 230)
        x, y = FACE_AT
        out[y : y + face.shape[0], x : x + face.shape[1]] = face
        return out

    return paste


class LaneRun:
    """A lane with a frame keeper and its sender over a real outbox."""

    def __init__(
        self, models: LaneModels, tmp_path: Path, config: FrameKeeperConfig, privacy: PrivacyFilter
    ) -> None:
        self.outbox = Outbox(tmp_path / "outbox.sqlite3")
        clock = StreamClock.now()
        self.sender = FrameSender("lane-7", self.outbox, clock, privacy)
        self.keeper = FrameKeeper(self.sender, config, tmp_path / "frames-quota.json")
        self.lane = Lane(
            "lane-7",
            LanePipeline(models, LaneZones.standard(640, 480)),
            LaneCatalog.from_file(),
            self.outbox,
            clock=clock,
            frames=self.keeper,
        )

    def play(self, world: World, kind: str, seed: int, paste: Paste | None = None) -> None:
        scenario = build_scenario(kind, seed, world, fps=15.0)
        events = sorted(lane_inputs(scenario), key=lambda e: e.t)
        renderer = SceneRenderer(scenario, world)
        t = 0.0
        for index in range(scenario.n_frames):
            t = index / scenario.fps
            while events and events[0].t <= t:
                self.lane.on_input(events.pop(0), t)
            frame, _ = renderer.render(index)
            self.lane.process_frame(paste(frame) if paste else frame, t)
        for event in events:
            self.lane.on_input(event, t)
        self.lane.end_transaction(t + 1.0)
        assert self.sender.drain()

    def frames(self) -> list[FrameMessage]:
        return [
            FrameMessage.model_validate_json(entry.payload)
            for entry in self.outbox.due(1000)
            if entry.kind == "frame"
        ]

    def close(self) -> None:
        self.sender.close()
        self.lane.pipeline.close()
        self.outbox.close()


def image_of(message: FrameMessage) -> np.ndarray:
    data = np.frombuffer(base64.b64decode(message.frame_jpeg_b64), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    assert image is not None
    return image


def test_an_honest_checkout_sends_a_few_sharp_frames_per_item_every_box_labelled_and_no_face(
    models: LaneModels, world: World, face: np.ndarray, tmp_path: Path
) -> None:
    detector = FaceDetector()
    unfiltered = with_face(face)(np.full((480, 640, 3), 90, np.uint8))
    ((fx1, fy1, fx2, fy2),) = detector.faces(unfiltered)  # found before filtering
    sharp_face = cv2.Laplacian(unfiltered[fy1:fy2, fx1:fx2].astype(np.float32), cv2.CV_32F).var()
    run = LaneRun(models, tmp_path, FrameKeeperConfig(), PrivacyFilter([MASK], detector=detector))
    try:
        run.play(world, "honest", 3, with_face(face))
        outcome = run.lane.last_outcome
        assert outcome is not None and outcome.honest, "the rendered customer is honest"
        counted = {item.track_id for item, _, _ in outcome.pairs}
        frames = run.frames()
        honest = [f for f in frames if f.reason == "honest"]
        assert 1 <= len(honest) <= FrameKeeperConfig().per_transaction
        shown = {b.track_id for f in honest for b in f.boxes if b.kind == "track"}
        # Six frames at most: each counted item shown is labelled by its track.
        assert len(shown & counted) >= min(len(counted), 3), (shown, counted)
        for message in frames:
            assert message.transaction_id == outcome.transaction_id
            assert message.model_version == models.manifest.version
            assert (message.width, message.height) == (640, 480)
            for box in message.boxes:
                x1, y1, x2, y2 = box.box
                assert 0 <= x1 < x2 <= 640 and 0 <= y1 < y2 <= 480
                if box.kind == "track" and box.label == "product":
                    assert box.track_id in counted
            image = image_of(message)
            assert image.shape == (480, 640, 3)
            assert image[5:115, 5:155].max() < 30, "the privacy mask is black in the stored frame"
            assert detector.faces(image) == [], "no face is left to find"
            after = image[fy1:fy2, fx1:fx2].astype(np.float32)
            assert cv2.Laplacian(after, cv2.CV_32F).var() < 0.05 * sharp_face, "face blurred"
        assert run.keeper.stats.kept == len(frames)
        scraped = LaneMetrics(run.lane, run.outbox, frame_sender=run.sender).exposition().decode()
        kept = f'laneguard_lane_detection_frames_kept_total{{lane="lane-7"}} {float(len(frames))}'
        assert kept in scraped
    finally:
        run.close()


def test_the_daily_quota_holds_across_a_restart(
    models: LaneModels, world: World, tmp_path: Path
) -> None:
    config = FrameKeeperConfig(per_day=2)
    run = LaneRun(models, tmp_path, config, PrivacyFilter(blur_faces=False))
    try:
        run.play(world, "honest", 3)
        assert len(run.frames()) == 2 and run.keeper.stats.over_quota >= 1
        quota = tmp_path / "frames-quota.json"
        assert stat.S_IMODE(quota.stat().st_mode) == 0o600
        assert json.loads(quota.read_text())["used"] == 2
        sent: list[KeptFrame] = []
        restarted = FrameKeeper(sent.append, config, quota)  # the lane after a restart
        assert restarted.quota.take(5) == 0 and sent == []
    finally:
        run.close()


def test_a_box_the_cashier_calls_not_an_item_after_the_checkout_leaves_as_a_false_box(
    models: LaneModels, world: World, tmp_path: Path
) -> None:
    run = LaneRun(models, tmp_path, FrameKeeperConfig(), PrivacyFilter(blur_faces=False))
    try:
        run.play(world, "skip_scan", 5)
        outcome = run.lane.last_outcome
        assert outcome is not None and not outcome.honest
        assert not [f for f in run.frames() if f.reason == "honest"], "a dishonest checkout"
        alert = next(a for a in outcome.alerts if a.type == "unscanned_item")
        assert alert.track_id is not None
        run.lane.resolve(alert.alert_id, "not_an_item")
        assert run.sender.drain()
        false = [f for f in run.frames() if f.reason == "not_an_item"]
        assert false, "the alerted item's frame goes to the store"
        boxes = [b for f in false for b in f.boxes if b.kind == "not_an_item"]
        assert {b.track_id for b in boxes} == {alert.track_id}
    finally:
        run.close()


def test_frames_around_a_scan_no_item_was_seen_for_are_of_interest(
    models: LaneModels, world: World, tmp_path: Path
) -> None:
    run = LaneRun(models, tmp_path, FrameKeeperConfig(), PrivacyFilter(blur_faces=False))
    try:
        run.play(world, "scan_without_item", 2)
        outcome = run.lane.last_outcome
        assert outcome is not None and outcome.unseen_scans
        scans = {s.event_id: s.t for s in outcome.scans}
        unseen = [f for f in run.frames() if f.reason == "unseen_scan"]
        assert unseen
        clock = run.lane.clock
        times = [clock.at(scans[e]) for e in outcome.unseen_scans]
        window = FrameKeeperConfig().unseen_scan_window_s
        for frame in unseen:
            assert min(abs((frame.captured_at - t).total_seconds()) for t in times) <= window
    finally:
        run.close()


def test_the_candidate_ring_stays_bounded_and_spread_over_a_long_checkout(
    models: LaneModels, world: World
) -> None:
    sent: list[KeptFrame] = []
    keeper = FrameKeeper(sent.append, FrameKeeperConfig(candidates=8, every_s=0.1))
    pipeline = LanePipeline(models, LaneZones.standard(640, 480))
    scenario = build_scenario("honest", 3, world, fps=15.0)
    renderer = SceneRenderer(scenario, world)
    try:
        for index in range(scenario.n_frames):
            frame, _ = renderer.render(index)
            keeper.observe(frame, pipeline.process(frame, index / scenario.fps))
    finally:
        pipeline.close()
    ring = keeper._ring
    assert 4 <= len(ring) <= 8 and keeper.stats.thinned >= 1
    span = ring[-1].t - ring[0].t
    assert span >= 0.5 * (scenario.n_frames / scenario.fps - 2.0), "still covers the checkout"


def test_frames_are_the_first_thing_a_full_outbox_lets_go(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", cap_bytes=3000)
    outbox.put("sample", "s1", b"x" * 1000)
    outbox.put("frame", "f1", b"y" * 1000)
    outbox.put("clip", "c1", b"z" * 1000)
    outbox.put("frame", "f2", b"y" * 500)
    kinds = [e.message_id for e in outbox.due(10)]
    assert "f1" not in kinds and {"s1", "c1", "f2"} <= set(kinds)
    assert outbox.dropped["frame"] == 1
    outbox.close()


def test_frames_leave_a_lane_only_when_turned_on_masked_and_blurred() -> None:
    assert not LaneSettings().frames.enabled, "by default only item crops leave a lane"
    with pytest.raises(ValidationError, match=r"frames\.enabled needs privacy\.blur_faces"):
        LaneSettings(frames={"enabled": True})  # no mask
    with pytest.raises(ValidationError, match=r"frames\.enabled needs privacy\.blur_faces"):
        LaneSettings(frames={"enabled": True}, privacy={"masks": [MASK], "blur_faces": False})
    on = LaneSettings(frames={"enabled": True}, privacy={"masks": [MASK]})
    assert on.frames.enabled and on.frames.per_day == 200
    with pytest.raises(ValidationError, match=r"t2 \(0.6\) must not be above t1 \(0.5\)"):
        LaneSettings(frames={"t2": 0.6})
    with pytest.raises(ValidationError, match="per_day"):
        LaneSettings(frames={"per_day": -1})


def test_frames_between_detections_are_never_kept_with_an_earlier_frames_boxes(
    models: LaneModels, world: World
) -> None:
    sent: list[KeptFrame] = []
    keeper = FrameKeeper(sent.append, FrameKeeperConfig(every_s=0.05))
    pipeline = LanePipeline(models, LaneZones.standard(640, 480), detect_interval=2)
    scenario = build_scenario("honest", 3, world, fps=15.0)
    renderer = SceneRenderer(scenario, world)
    detected_at = set()
    try:
        for index in range(scenario.n_frames):
            frame, _ = renderer.render(index)
            result = pipeline.process(frame, index / scenario.fps)
            if result.detected:
                detected_at.add(result.t)
            keeper.observe(frame, result)
    finally:
        pipeline.close()
    kept = {candidate.t for candidate in keeper._ring}
    assert kept and kept <= detected_at, "only frames the detector saw carry boxes"


def test_a_new_checkout_starts_with_its_own_candidates_at_the_full_rate(
    models: LaneModels, world: World
) -> None:
    sent: list[KeptFrame] = []
    keeper = FrameKeeper(sent.append, FrameKeeperConfig(candidates=4, every_s=0.05))
    pipeline = LanePipeline(models, LaneZones.standard(640, 480))
    scenario = build_scenario("honest", 3, world, fps=15.0)
    renderer = SceneRenderer(scenario, world)
    t = 0.0
    try:
        for index in range(60):  # something lies in view between customers
            frame, _ = renderer.render(index)
            t = index / scenario.fps
            keeper.observe(frame, pipeline.process(frame, t))
    finally:
        pipeline.close()
    assert keeper.stats.thinned >= 1 and keeper._interval > 0.05
    keeper.start(t + 10.0)
    assert keeper._ring == [] and keeper._interval == 0.05


def test_a_box_the_privacy_mask_mostly_covers_leaves_blacked_out_and_unlabelled(
    tmp_path: Path,
) -> None:
    """Its label would teach the detector an object on a black patch; without the label, its
    visible rest would teach the object as background: so neither is left."""
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    sender = FrameSender("lane-7", outbox, StreamClock.now(), PrivacyFilter([MASK], False))
    under, across, clear = (
        (20.0, 20.0, 180.0, 100.0),
        (100.0, 60.0, 220.0, 160.0),
        (300.0, 300.0, 400.0, 400.0),
    )
    boxes = tuple(
        FrameBox(box=box, label="product", kind="track", score=0.9, track_id=n)
        for n, box in enumerate((under, across, clear))
    )
    image = np.full((480, 640, 3), 200, np.uint8)
    try:
        sender(KeptFrame("tx-1", "honest", 1.0, image, boxes, "bootstrap-8"))
        assert sender.drain()
        (entry,) = [e for e in outbox.due(10) if e.kind == "frame"]
        message = FrameMessage.model_validate_json(entry.payload)
    finally:
        sender.close()
        outbox.close()
    assert [b.box for b in message.boxes] == [across, clear]  # 30% under the mask: kept
    sent = image_of(message)
    assert sent[20:100, 20:180].max() < 30  # 88% under the mask: blacked out whole
    assert sent[121:160, 101:220].min() > 150  # the kept box's visible part is untouched
    assert sent[300:400, 300:400].min() > 150
