"""The frame teacher and the Samples page's one-tap Yes / No on camera frames (issue #35).

The frames are a real 640x480 lane scene (the simulator's renderer, a JPEG as a lane sends
it) delivered through the real ingest API to a real store server, whose own background teacher
runs the shipped bundle's largest detector on them. The "of interest" boxes lie on what the
scene holds: a fruit in full view (the detector is sure: yes), a cereal box half hidden under a
hand and a wallet (unclear: a person decides), and bare lane (nothing there: no). A person
then decides in a headless Chromium; whatever is not a decision the console can take is
refused, naming the problem, and changes nothing."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from random import Random
from typing import Any

import cv2
import httpx
import pytest
from playwright.sync_api import Browser, expect
from pydantic import ValidationError
from sqlmodel import Session, col, select

from laneguard.bundle import SHIPPED_BUNDLE, ModelFile, derive_bundle, read_manifest
from laneguard.wire import FrameBox, FrameMessage, FrameReason
from product_db.db import make_engine
from product_db.models import utcnow
from simulator.datasets import DETECT_NAMES, snapshot
from simulator.scenario import LaneLayout
from simulator.scene import Look, SceneRenderer
from simulator.world import World
from store_server.app import create_app
from store_server.auth import create_user
from store_server.db import migrate
from store_server.frame_teacher import FrameTeacher, Thresholds
from store_server.media import MediaStore
from store_server.models import AuditEntry, DetectionFrame, Rollout
from store_server.rollouts import publish_bundle
from store_server.settings import StoreSettings
from store_server.teacher_detector import teacher_model_file
from tests.helpers.live_server import enrol, serve, sign_in
from tests.helpers.messages import NOW, as_json, b64
from tests.store_server.test_console_browser import browser_sign_in, csp_violations

SHIPPED_VERSION = read_manifest(SHIPPED_BUNDLE).version  # the store's teacher when none is set

SCENE_SEED = 38  # a fruit alone, a cereal box under a hand and a wallet, bare lane on the left
BARE_LANE = (30.0, 150.0, 130.0, 250.0)  # nothing drawn there (the test checks)
PASSWORD = "manager-pass"


@dataclass(frozen=True)
class Scene:
    """The rendered frame as a lane's JPEG, and the boxes of what it shows."""

    jpeg: bytes
    fruit: tuple[float, float, float, float]  # a product in full view
    hidden: tuple[float, float, float, float]  # a product half under a hand and a wallet
    wallet: tuple[float, float, float, float]  # non-merchandise over the cereal box
    hand: tuple[float, float, float, float]


@pytest.fixture(scope="module")
def scene() -> Scene:
    rng = Random(SCENE_SEED)
    world = World.from_catalog()
    shot = snapshot(world, rng, world.known, LaneLayout(), 1, seed=SCENE_SEED)
    frame, boxes = SceneRenderer(shot, world, Look.random(rng)).render(5)
    assert frame.shape == (480, 640, 3)
    by_class: dict[str, list[Any]] = {}
    for box in boxes:
        by_class.setdefault(DETECT_NAMES[box.cls], []).append(box)

    def xyxy(box: Any) -> tuple[float, float, float, float]:
        return (float(box.x1), float(box.y1), float(box.x2), float(box.y2))

    products = by_class["product"]
    fruit = next(b for b in products if b.visible == 1.0)
    hidden = next(b for b in products if b.visible < 0.6)
    for box in boxes:  # the bare lane is bare
        x1, y1, x2, y2 = xyxy(box)
        assert x2 <= BARE_LANE[0] or x1 >= BARE_LANE[2] or y2 <= BARE_LANE[1] or y1 >= BARE_LANE[3]
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return Scene(
        data.tobytes(),
        xyxy(fruit),
        xyxy(hidden),
        xyxy(by_class["non_merchandise"][0]),
        xyxy(by_class["hand"][-1]),
    )


def unsure(box: tuple[float, float, float, float], score: float = 0.45) -> FrameBox:
    """A box the lane's detector scored between its T2 and T1: "of interest"."""
    return FrameBox(box=box, label="product", kind="of_interest", score=score)


def frame_message(
    n: int, scene: Scene, boxes: list[FrameBox], reason: FrameReason = "low_score"
) -> FrameMessage:
    return FrameMessage(
        message_id=f"lane-1:frame:{n}",
        lane_id="lane-1",
        transaction_id=f"tx-{n}",
        reason=reason,
        captured_at=NOW + timedelta(seconds=n),
        model_version="bootstrap-8",
        width=640,
        height=480,
        boxes=boxes,
        frame_jpeg_b64=b64(scene.jpeg),
    )


@dataclass
class Store:
    url: str
    database_url: str
    data_dir: Path
    credential: str

    def deliver(self, *messages: FrameMessage) -> None:
        reply = httpx.post(
            f"{self.url}/api/v1/ingest",
            json={"messages": [as_json(m) for m in messages]},
            headers={"Authorization": f"Bearer {self.credential}"},
            timeout=30,
        )
        assert reply.status_code == 200 and reply.json()["rejected"] == 0, reply.text

    def frames(self) -> dict[str, DetectionFrame]:
        """Every frame, by its message id."""
        engine = make_engine(self.database_url)
        with Session(engine) as session:
            rows = {f.message_id: f for f in session.exec(select(DetectionFrame))}
        engine.dispose()
        return rows

    def audit(self) -> list[AuditEntry]:
        engine = make_engine(self.database_url)
        with Session(engine) as session:
            rows = list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))))
        engine.dispose()
        return rows

    def judged(self, *message_ids: str, timeout_s: float = 60) -> dict[str, DetectionFrame]:
        """The frames once the server's teacher has looked at all of ``message_ids``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            frames = self.frames()
            if all(m in frames and frames[m].teacher_checked_at is not None for m in message_ids):
                return frames
            time.sleep(0.3)
        raise AssertionError(f"the frame teacher never judged {message_ids}")


@contextmanager
def running_store(database_url: str, data_dir: Path, **settings: Any) -> Iterator[Store]:
    """A store server (its frame teacher on, with ``settings``), a manager, mia, and an IT
    admin, ivan, and lane-1 enrolled."""
    engine = make_engine(database_url)
    migrate(engine)
    create_user(engine, "mia", PASSWORD, "manager")
    create_user(engine, "ivan", "admin-pass!", "it_admin")
    engine.dispose()
    app = create_app(
        StoreSettings(database_url=database_url, data_dir=data_dir, discovery_port=0, **settings)
    )
    with serve(app) as url:
        yield Store(url, database_url, data_dir, enrol(url, database_url, "lane-1"))


# The shipped detector-416 scores the fruit about 0.88 and the half-hidden cereal box about
# 0.25 as products, and sees nothing on the bare lane: the store's defaults, T3 0.6 and reject
# 0.1, make the fruit a yes, the bare lane a no and the cereal box a person's question.
DEFAULTS = {"frame_teacher_t3": 0.6, "frame_teacher_reject": 0.1}


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    with running_store(database_url, tmp_path / "data", **DEFAULTS) as running:
        yield running


@pytest.fixture
def judged_store(scene: Scene, tmp_path: Path) -> Iterator[tuple[Store, dict[str, int]]]:
    """A SQLite store whose teacher has judged frame 1 (fruit, cereal box, bare lane, and a
    track box of the hand: waits for a person) and frame 2 (fruit and bare lane: decided by
    the teacher); their ids by name."""
    with running_store(f"sqlite:///{tmp_path / 'store.sqlite3'}", tmp_path, **DEFAULTS) as running:
        running.deliver(*judged_frames(scene))
        frames = running.judged("lane-1:frame:1", "lane-1:frame:2")
        ids = {"open": frames["lane-1:frame:1"].id, "done": frames["lane-1:frame:2"].id}
        yield running, {k: v for k, v in ids.items() if v is not None}


def judged_frames(scene: Scene) -> list[FrameMessage]:
    hand = FrameBox(box=scene.hand, label="hand", kind="track", score=0.9, track_id=4)
    return [
        frame_message(
            1, scene, [unsure(scene.fruit), unsure(scene.hidden), unsure(BARE_LANE), hand]
        ),
        frame_message(2, scene, [unsure(scene.fruit), unsure(BARE_LANE, 0.3)]),
    ]


def test_the_teacher_detector_is_the_bundles_largest_float_first() -> None:
    manifest = read_manifest(SHIPPED_BUNDLE)
    assert teacher_model_file(manifest).file == "detector-416-int8.onnx"
    [model] = [m for m in manifest.models if m.file == "detector-416-int8.onnx"]

    def variant(size: int, precision: str) -> ModelFile:
        name = f"detector-{size}-{precision}.onnx"
        return model.model_copy(update={"file": name, "input_size": size, "precision": precision})

    for offered, chosen in [
        ([variant(320, "fp32"), variant(416, "int8"), variant(416, "fp32")], "detector-416-fp32"),
        ([variant(320, "int8"), variant(320, "fp32")], "detector-320-fp32"),
        ([variant(640, "int8"), variant(416, "fp32")], "detector-640-int8"),
    ]:
        bundle = manifest.model_copy(update={"models": offered})
        assert teacher_model_file(bundle).file == f"{chosen}.onnx"


def test_the_teacher_says_yes_no_and_leaves_the_unclear_box_to_a_person(
    store: Store, scene: Scene
) -> None:
    honest = frame_message(
        3,
        scene,
        [FrameBox(box=scene.fruit, label="product", kind="track", score=0.93, track_id=1)],
        reason="honest",
    )
    store.deliver(*judged_frames(scene), honest)
    frames = store.judged("lane-1:frame:1", "lane-1:frame:2", "lane-1:frame:3")

    open_frame, done, kept = (frames[f"lane-1:frame:{n}"] for n in (1, 2, 3))
    fruit, hidden, bare, hand = open_frame.boxes
    scores = [float(str(box["teacher_score"])) for box in (fruit, hidden, bare)]
    assert scores[0] >= 0.8 and 0.1 <= scores[1] < 0.6 and scores[2] < 0.1, scores
    assert (fruit["verdict"], fruit["by"]) == ("yes", f"teacher ({SHIPPED_VERSION})")
    assert "verdict" not in hidden and "by" not in hidden
    assert (bare["verdict"], bare["by"]) == ("no", f"teacher ({SHIPPED_VERSION})")
    assert hand == judged_frames(scene)[0].boxes[3].model_dump(mode="json")  # not the teacher's
    for box, sent in zip(open_frame.boxes, judged_frames(scene)[0].boxes):
        assert {k: box[k] for k in ("box", "label", "kind", "score")} == {
            k: v for k, v in sent.model_dump(mode="json").items() if k != "track_id"
        }
    assert open_frame.review == "needs_review"
    assert done.review == "teacher" and [b["verdict"] for b in done.boxes] == ["yes", "no"]
    # An honest frame's boxes are its label: looked at once, left as it is.
    assert kept.review == "pending" and kept.boxes == [honest.boxes[0].model_dump(mode="json")]

    [entry] = [e for e in store.audit() if e.username == "teacher"]
    assert (entry.action, entry.target) == ("frames.labelled", "2 frames")
    assert {k: entry.detail[k] for k in ("yes", "no", "undecided", "t3", "reject")} == {
        "yes": 2,
        "no": 2,
        "undecided": 1,
        "t3": 0.6,
        "reject": 0.1,
    }
    assert (entry.detail["model"], entry.detail["detector"]) == (
        SHIPPED_VERSION,
        "detector-416-int8.onnx",
    )

    # It never judges a frame twice, nor one a person is deciding.
    engine = make_engine(store.database_url)
    again = FrameTeacher(
        engine,
        MediaStore(store.data_dir / "media"),
        store.data_dir,
        SHIPPED_BUNDLE,
        Thresholds(0.0, 0.0),
    )
    assert again.judge().frames == 0
    engine.dispose()
    assert store.frames()["lane-1:frame:1"].boxes == open_frame.boxes


def test_the_teacher_judges_with_the_production_bundle_once_a_rollout_completes(
    scene: Scene, tmp_path: Path
) -> None:
    """The detector the lanes run after a completed rollout is the teacher's; its verdicts
    name that bundle's version."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    engine = make_engine(url)
    migrate(engine)
    newer = derive_bundle(SHIPPED_BUNDLE, tmp_path / "store-1.tar.gz", version="store-1")
    with Session(engine) as session:
        release = publish_bundle(session, tmp_path, newer, "ivan")
        assert release.id is not None
        session.add(
            Rollout(
                release_id=release.id,
                stages=[{"name": "all", "share": 1.0}],
                state="completed",
                created_by="ivan",
                finished_at=utcnow(),
            )
        )
        session.commit()
    with serve(
        create_app(StoreSettings(database_url=url, data_dir=tmp_path, discovery_port=0))
    ) as base:
        store = Store(base, url, tmp_path, enrol(base, url, "lane-1"))
        store.deliver(frame_message(1, scene, [unsure(scene.fruit)]))
        [fruit] = store.judged("lane-1:frame:1")["lane-1:frame:1"].boxes
    assert (fruit["verdict"], fruit["by"]) == ("yes", "teacher (store-1)")
    engine.dispose()


def test_with_the_frame_teacher_off_a_person_decides_every_box(
    scene: Scene, tmp_path: Path
) -> None:
    settings = StoreSettings()
    assert (settings.frame_teacher, settings.frame_teacher_t3, settings.frame_teacher_reject) == (
        True,
        0.6,
        0.1,
    )
    with pytest.raises(ValidationError, match="frame_teacher_reject must not be above"):
        StoreSettings(frame_teacher_t3=0.3, frame_teacher_reject=0.5)
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    with running_store(url, tmp_path, frame_teacher=False) as store:
        store.deliver(frame_message(1, scene, [unsure(scene.fruit), unsure(BARE_LANE)]))
        row = store.judged("lane-1:frame:1")["lane-1:frame:1"]
        assert row.review == "needs_review"
        # Untouched: no verdict, and no score of a detector that did not look.
        assert row.boxes == [unsure(b).model_dump(mode="json") for b in (scene.fruit, BARE_LANE)]
        assert not [e for e in store.audit() if e.username == "teacher"]
        with httpx.Client(base_url=store.url, timeout=10) as client:
            sign_in(client, "mia", PASSWORD)
            page = client.get("/samples").text
        assert listed_frames(page) == [row.id] and page.count('class="box undecided"') == 2
        assert "store model" not in page  # no score of a model that did not look


def listed_frames(page: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-frame="(\d+)"', page)]


def test_only_frames_waiting_for_a_person_are_listed_and_their_pictures_are_private(
    judged_store: tuple[Store, dict[str, int]],
) -> None:
    store, ids = judged_store
    image = store.frames()["lane-1:frame:1"].image
    with httpx.Client(base_url=store.url, timeout=10) as anonymous:
        assert anonymous.get("/samples").headers["location"].startswith("/login")
        refused = anonymous.get(f"/media/{image}")
        assert refused.status_code == 303 and refused.headers["location"].startswith("/login")
    with httpx.Client(base_url=store.url, timeout=10) as client:
        sign_in(client, "mia", PASSWORD)
        page = client.get("/samples").text
        assert listed_frames(page) == [ids["open"]]  # the teacher decided frame 2 alone
        assert "1 frame waits" in page
        assert page.count('class="box undecided"') == 1 and page.count('class="box decided') == 2
        assert f'action="/samples/frames/{ids["open"]}/boxes/1"' in page
        assert f'src="/media/{image}"' in page
        picture = client.get(f"/media/{image}")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/jpeg"
        assert picture.headers["cache-control"] == "private"
        assert picture.content[:3] == b"\xff\xd8\xff"


def test_a_decision_needs_a_signed_in_user_and_the_sessions_csrf_token(
    judged_store: tuple[Store, dict[str, int]],
) -> None:
    store, ids = judged_store
    before = store.frames()["lane-1:frame:1"].boxes
    target = f"/samples/frames/{ids['open']}/boxes/1"
    with httpx.Client(base_url=store.url, timeout=10) as anonymous:
        assert anonymous.post(target, data={"verdict": "yes"}).status_code == 401
    with httpx.Client(base_url=store.url, timeout=10) as client:
        sign_in(client, "mia", PASSWORD)
        missing = client.post(target, data={"verdict": "yes"})
        assert missing.status_code == 403 and "security token" in missing.text
        forged = client.post(target, data={"verdict": "yes", "csrf_token": "x" * 32})
        assert forged.status_code == 403
    after = store.frames()["lane-1:frame:1"]
    assert after.boxes == before and after.review == "needs_review"
    assert not [e for e in store.audit() if e.action == "frame.box_decided"]


def test_what_is_not_a_decision_is_refused_naming_the_problem(
    judged_store: tuple[Store, dict[str, int]],
) -> None:
    store, ids = judged_store
    before = store.frames()
    open_id, done_id = ids["open"], ids["done"]
    with httpx.Client(base_url=store.url, timeout=10) as client:
        csrf = sign_in(client, "ivan", "admin-pass!")

        def refused(path: str, verdict: str) -> tuple[int, str]:
            reply = client.post(path, data={"verdict": verdict, "csrf_token": csrf})
            return reply.status_code, reply.text

        cases: list[tuple[str, str, int, str]] = [
            (f"/samples/frames/{2**40}/boxes/0", "yes", 404, f"no camera frame {2**40}"),
            (f"/samples/frames/{open_id}/boxes/9", "yes", 404, f"frame {open_id} has no box 9"),
            (f"/samples/frames/{open_id}/boxes/3", "no", 422, "a track box, not one the lane"),
            (f"/samples/frames/{open_id}/boxes/1", "maybe", 422, "verdict must be yes or no"),
            (f"/samples/frames/{open_id}/boxes/0", "no", 409, "decided already: yes by teacher"),
            (f"/samples/frames/{done_id}/boxes/0", "no", 409, "not waiting for a person"),
            (f"/samples/frames/{open_id}/boxes/-1", "yes", 422, "index"),
            (f"/samples/frames/{open_id}/boxes/65", "yes", 422, "index"),
            ("/samples/frames/nine/boxes/0", "yes", 422, "frame_id"),
            ("/samples/frames/0/boxes/0", "yes", 422, "frame_id"),
        ]
        for path, verdict, status, words in cases:
            got, text = refused(path, verdict)
            assert (got, words in text) == (status, True), (path, verdict, got, text[-600:])
    after = store.frames()
    assert {m: (f.boxes, f.review) for m, f in after.items()} == {
        m: (f.boxes, f.review) for m, f in before.items()
    }
    assert not [e for e in store.audit() if e.action == "frame.box_decided"]


def test_a_manager_decides_each_unsure_box_with_one_tap(
    browser: Browser, scene: Scene, tmp_path: Path, artifacts_dir: Path
) -> None:
    """A stricter T3 leaves the fruit to the person too, and a wallet the lane took for a
    product: three boxes to tap on one frame, while the teacher's "no" on the bare lane shows
    as decided. Yes, No, Yes: each tap reloads the page with one box fewer to decide, and the
    last takes the frame off the list."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    with running_store(url, tmp_path, frame_teacher_t3=0.95, frame_teacher_reject=0.1) as store:
        wallet = FrameBox(box=scene.wallet, label="product", kind="of_interest", score=0.4)
        store.deliver(
            frame_message(
                1, scene, [unsure(scene.fruit), unsure(scene.hidden), wallet, unsure(BARE_LANE)]
            )
        )
        frame = store.judged("lane-1:frame:1")["lane-1:frame:1"]
        assert frame.review == "needs_review"
        assert [b.get("verdict") for b in frame.boxes] == [None, None, None, "no"]

        page = browser.new_page(viewport={"width": 1280, "height": 900})
        blocked = csp_violations(page)
        browser_sign_in(page, store.url, "mia", PASSWORD)
        expect(page.locator("h1")).to_contain_text("Alerts")
        page.click("text=Samples")
        card = page.locator(f'figure.frame-review[data-frame="{frame.id}"]')
        expect(card).to_be_visible()
        picture = card.locator(".frame-picture img")
        expect(picture).to_be_visible()
        assert picture.evaluate("img => img.naturalWidth") == 640
        expect(card.locator("rect.undecided")).to_have_count(3)
        expect(card.locator("rect.decided.no")).to_have_count(1)
        # The overlay is drawn in the frame's pixels and scaled with the picture: the fruit's
        # box lies over the fruit at the size the page shows it.
        shown = picture.bounding_box()
        drawn = card.locator('rect.undecided[data-box="0"]').bounding_box()
        assert shown is not None and drawn is not None
        ratio = shown["width"] / 640
        assert abs(drawn["x"] - (shown["x"] + scene.fruit[0] * ratio)) < 3
        assert abs(drawn["width"] - (scene.fruit[2] - scene.fruit[0]) * ratio) < 4
        page.screenshot(path=str(artifacts_dir / "console-frame-review.png"), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing scrolls sideways
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        page.screenshot(path=str(artifacts_dir / "console-frame-review-phone.png"), full_page=True)
        page.set_viewport_size({"width": 1280, "height": 900})

        taps = [(1, "yes"), (2, "no"), (0, "yes")]  # the cereal box, the wallet, the fruit
        for done, (index, verdict) in enumerate(taps, start=1):
            question = card.locator(f'ol.box-questions li[data-box="{index}"]')
            question.locator(f"button[value={verdict}]").click()
            if done < len(taps):
                expect(card.locator("rect.undecided")).to_have_count(3 - done)
                expect(card.locator("rect.decided")).to_have_count(1 + done)
        expect(page.locator("figure.frame-review")).to_have_count(0)
        expect(page.locator("section#frames")).to_have_count(0)
        assert blocked == []

        decided = store.frames()["lane-1:frame:1"]
        assert decided.review == "reviewed"
        assert [(b["verdict"], b["by"]) for b in decided.boxes] == [
            ("yes", "mia"),
            ("yes", "mia"),
            ("no", "mia"),
            ("no", f"teacher ({SHIPPED_VERSION})"),
        ]
        entries = [e for e in store.audit() if e.action == "frame.box_decided"]
        assert [(e.username, e.target, e.detail["verdict"]) for e in entries] == [
            ("mia", f"frame {frame.id} box 1", "yes"),
            ("mia", f"frame {frame.id} box 2", "no"),
            ("mia", f"frame {frame.id} box 0", "yes"),
        ]
        assert [e.detail["reviewed"] for e in entries] == [False, False, True]
        with httpx.Client(base_url=store.url, timeout=10) as it_admin:
            sign_in(it_admin, "ivan", "admin-pass!")
            audit_page = it_admin.get("/audit").text
        assert f"Said there is no product in frame {frame.id} box 2 (lane lane-1)" in audit_page
        assert (
            "The teacher detector judged the unsure boxes of 1 frame: 0 objects, 1 nothing "
            "there, 3 left to a person" in audit_page
        )
