"""Alert clips on the lane: the ring's memory cap, the privacy filter on a real face, a clip's
frames, the frame loop never waiting for the encoder, and a whole lane making a skip-scan
alert's clip that the cashier replays in a real Chromium."""

from __future__ import annotations

import json
import os
import threading
from importlib.resources import files
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser

from checkout_node.catalog import LaneCatalog
from checkout_node.clips import WORKER_QUEUE, Clip, ClipRecorder, FrameRing, RingFrame, encode_webm
from checkout_node.lane import Lane
from checkout_node.metrics import LaneMetrics
from checkout_node.model_bundle import LaneModels, load_models
from checkout_node.outbox import Outbox
from checkout_node.privacy import FaceDetector, PrivacyFilter
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from laneguard.bundle import SHIPPED_BUNDLE
from simulator.recording import lane_inputs
from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World
from tests.helpers.live_server import serve

MASK = [(0.0, 0.0), (160.0, 0.0), (160.0, 120.0), (0.0, 120.0)]  # top-left, camera pixels
FACE_AT = (440, 40)  # where the face is pasted into a 640x480 frame (x, y)
AMBER = np.array([0, 215, 255])


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """A real photographed face (the astronaut photo scikit-image ships), 160 px across."""
    photo = cv2.imread(str(files("skimage") / "data/astronaut.png"))
    assert photo is not None
    return cv2.resize(photo[0:260, 110:340], (160, 180))


def frame_with_face(face: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """A 640x480 lane frame: a textured counter, a face at the edge, an item moving across."""
    rng = np.random.default_rng(int(t * 100))
    image = rng.integers(70, 110, (480, 640, 3), dtype=np.uint8)
    image[0:120, 0:160] = (200, 200, 200)  # where a customer stands: masked
    x, y = FACE_AT
    image[y : y + face.shape[0], x : x + face.shape[1]] = face
    left = int(100 + 40 * t)
    box = np.array([left, 300, left + 90, 380], np.float32)
    cv2.rectangle(image, (left, 300), (left + 90, 380), (30, 160, 60), -1)
    return image, box


def decoded(clip: bytes, tmp_path: Path) -> list[np.ndarray]:
    path = tmp_path / "clip.webm"
    path.write_bytes(clip)
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def test_the_ring_stays_within_its_byte_cap_and_history() -> None:
    ring = FrameRing(cap_bytes=10_000, history_s=2.0)
    for index in range(100):
        ring.add(RingFrame(index * 0.1, bytes(300), {}))
    assert ring.bytes <= 10_000 and len(ring) == 21  # 2 s of history at 10 frames/s
    tight = FrameRing(cap_bytes=1_000, history_s=60.0)
    for index in range(100):
        tight.add(RingFrame(index * 0.1, bytes(300), {}))
    assert tight.bytes <= 1_000 and len(tight) == 3
    assert [f.t for f in tight.between(9.7, 9.9)] == pytest.approx([9.7, 9.8, 9.9])


def test_the_privacy_filter_blacks_out_masks_and_blurs_a_real_face(face: np.ndarray) -> None:
    detector = FaceDetector()
    image, _ = frame_with_face(face, 0.0)
    small = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
    found = detector.faces(small)
    assert found, "the detector must find the face before filtering"
    privacy = PrivacyFilter([MASK], blur_faces=True, detector=detector)
    (out,) = privacy.apply([small], 0.5)
    assert out[:60, :80].max() == 0  # the mask, scaled to the clip frame
    assert detector.faces(out) == []
    x1, y1, x2, y2 = found[0]
    before = small[y1:y2, x1:x2].astype(np.float32)
    after = out[y1:y2, x1:x2].astype(np.float32)
    # The face's detail (eyes, mouth, edges) is gone: a hundredth of its sharpness is left.
    assert cv2.Laplacian(after, cv2.CV_32F).var() < 0.02 * cv2.Laplacian(before, cv2.CV_32F).var()
    assert privacy.faces_blurred >= 1
    assert small[:60, :80].min() > 0, "the input frame itself is left alone"


def test_a_clip_covers_the_event_with_the_item_boxed_and_no_face(
    face: np.ndarray, tmp_path: Path
) -> None:
    made: list[Clip] = []
    recorder = ClipRecorder(
        tmp_path / "work", PrivacyFilter([MASK]), fps=8.0, width=320, on_clip=made.append
    )
    for index in range(int(4.0 * 30)):  # 4 s at 30 frames/s
        t = index / 30
        image, box = frame_with_face(face, t)
        recorder.add_frame(image, t, [(7, box)])
        if index == 60:  # an alert about what happened at 1.5 s, raised at 2.0 s
            recorder.alert("a-1", "tx-1", 7, event_s=1.5)
    recorder.flush()
    recorder.close()
    assert len(made) == 1 and recorder.stats.made == 1
    clip = made[0]
    assert (clip.alert_id, clip.transaction_id, clip.width, clip.height) == (
        "a-1",
        "tx-1",
        320,
        240,
    )
    assert clip.data.startswith(b"\x1a\x45\xdf\xa3")
    frames = decoded(clip.data, tmp_path)
    assert len(frames) == clip.frames and 22 <= clip.frames <= 25  # 0.0 .. 3.0 s at 8/s
    assert clip.started_s == pytest.approx(0.0, abs=0.2)
    detector = FaceDetector()
    assert all(detector.faces(f) == [] for f in frames)
    assert all(f[5:55, 5:75].mean() < 12 for f in frames)  # the mask (VP8 leaves a little)
    middle = frames[len(frames) // 2]
    amber = np.abs(middle.astype(int) - AMBER).sum(axis=2) < 90
    assert amber.sum() > 100, "the alert's item is boxed"
    assert list(tmp_path.joinpath("work").iterdir()) == [], "no temporary file is left behind"


def test_the_frame_loop_never_waits_for_a_slow_encoder(face: np.ndarray, tmp_path: Path) -> None:
    release = threading.Event()
    made: list[Clip] = []

    def slow(clip: Clip) -> None:
        release.wait(30)
        made.append(clip)

    recorder = ClipRecorder(
        tmp_path / "work", PrivacyFilter(blur_faces=False), fps=8.0, on_clip=slow
    )
    for index in range(30):
        image, box = frame_with_face(face, index / 10)
        recorder.add_frame(image, index / 10, [(1, box)])
    for n in range(WORKER_QUEUE + 6):  # alerts at a final check: all of them due at once
        recorder.alert(f"a-{n}", "tx", 1, event_s=1.0)
    image, box = frame_with_face(face, 3.1)
    recorder.add_frame(image, 3.1, [(1, box)])  # returns although the worker is stuck
    assert recorder.stats.dropped >= 5
    release.set()
    recorder.close()
    assert len(made) + recorder.stats.dropped == WORKER_QUEUE + 6


@pytest.fixture(scope="module")
def models() -> LaneModels:
    return load_models(SHIPPED_BUNDLE, profile="x86-2core")


def test_a_skip_scan_alert_gets_its_clip_in_the_outbox_and_on_the_lane_screen(
    models: LaneModels, tmp_path: Path, browser: Browser
) -> None:
    world = World.from_catalog()
    scenario = build_scenario("skip_scan", 5, world, fps=15.0)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    hub = ScreenHub()
    recorder = ClipRecorder(tmp_path / "clips", PrivacyFilter([MASK]), fps=6.0, width=320)
    lane = Lane(
        "lane-4",
        LanePipeline(models, LaneZones.standard(640, 480)),
        LaneCatalog.from_file(),
        outbox,
        hub.publish,
        clips=recorder,
    )
    access = LaneAccess("clip-screen-key")
    events = sorted(lane_inputs(scenario), key=lambda e: e.t)
    renderer = SceneRenderer(scenario, world)
    with serve(create_lane_app(lane, hub, live_clock=False, access=access)) as url:
        page = browser.new_page(viewport={"width": 900, "height": 520})
        page.goto(f"{url}/screen/session?key=clip-screen-key")
        page.wait_for_selector("#link.up")
        for index in range(scenario.n_frames):
            t = index / scenario.fps
            while events and events[0].t <= t:
                event = events.pop(0)
                if event.type not in ("transaction_end", "payment"):
                    lane.on_input(event, t)
            frame, _ = renderer.render(index)
            lane.process_frame(frame, t)
        recorder.flush()
        open_transaction = [lane.transaction] if lane.transaction else []
        alerts = [a for tx in [*lane.ended, *open_transaction] for a in tx.alerts]
        unscanned = [a for a in alerts if a.type == "unscanned_item"]
        assert unscanned, alerts
        clips = {
            json.loads(e.payload)["alert_id"]: json.loads(e.payload)
            for e in outbox.due(1000)
            if e.kind == "clip"
        }
        assert {a.alert_id for a in unscanned} <= set(clips)
        message = clips[unscanned[0].alert_id]
        assert message["media_type"] == "video/webm" and message["frames"] >= 10
        assert next(e.kind for e in outbox.due(1000)) == "alert", "the alert goes before its clip"
        raised = [
            json.loads(e.payload)
            for e in outbox.due(1000)
            if e.kind == "alert" and json.loads(e.payload)["alert_type"] == "unscanned_item"
        ]
        guesses = [g["code"] for g in raised[0]["guesses"]]  # the item's nearest products
        assert 1 <= len(guesses) <= 3 and len(set(guesses)) == len(guesses)

        clip_url = f"{url}/api/alerts/{unscanned[0].alert_id}/clip.webm"
        assert httpx.get(clip_url, timeout=10).status_code == 401  # not the screen's session
        with httpx.Client(timeout=10) as client:
            client.cookies.set(access.screen_cookie_name, access.screen_cookie)
            reply = client.get(clip_url)
            assert reply.status_code == 200 and reply.headers["content-type"] == "video/webm"
            assert reply.content == lane.evidence.clip(unscanned[0].alert_id)
            assert client.get(f"{url}/api/alerts/nope/clip.webm").status_code == 404

        page.wait_for_selector("#banner:not([hidden])")
        page.wait_for_selector("#replay:not([hidden])")
        page.click("#replay")
        page.wait_for_function(
            "(() => { const v = document.getElementById('banner-clip');"
            " return !v.hidden && v.readyState >= 2 && v.videoWidth === 320; })()"
        )
        page.close()
    scraped = LaneMetrics(lane, outbox).exposition().decode()
    made = f'laneguard_lane_clips_made_total{{lane="lane-4"}} {float(recorder.stats.made)}'
    assert made in scraped and recorder.stats.made >= len(unscanned)
    assert 'laneguard_lane_clip_ring_bytes{lane="lane-4"}' in scraped
    recorder.close()
    outbox.close()


def test_encoding_a_clip_writes_nothing_to_stderr_and_stderr_still_works(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The demo's terminal filled with OpenCV's "tag VP80 is not supported" line per clip."""
    images = [np.full((48, 64, 3), shade, np.uint8) for shade in range(0, 250, 25)]
    webm = encode_webm(images, 10.0, tmp_path)
    assert webm[:4] == b"\x1a\x45\xdf\xa3"  # EBML: a WebM file
    os.write(2, b"after the clip\n")  # the process's own stderr is back
    captured = capfd.readouterr()
    assert "VP80" not in captured.err and "after the clip" in captured.err
