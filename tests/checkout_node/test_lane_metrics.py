"""The lane's /metrics: a real lane over simulator frames, scraped over real HTTP, parsed with
Prometheus' own parser; the figures are the lane's own, and only a scraper it knows gets them."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from checkout_node.catalog import LaneCatalog
from checkout_node.lane import Lane
from checkout_node.model_bundle import load_models
from checkout_node.outbox import Outbox
from checkout_node.vision.counting import LaneZones
from checkout_node.vision.pipeline import LanePipeline
from checkout_node.web.access import LaneAccess
from checkout_node.web.app import create_lane_app
from checkout_node.web.hub import ScreenHub
from laneguard.wire import PosMessage
from simulator.scenario import build_scenario
from simulator.scene import SceneRenderer
from simulator.world import World
from tests.helpers.live_server import serve

TOKEN = "scrape-token-for-these-tests-0123456789"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels without 'lane') -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "lane"))
            out[(sample.name, labels)] = sample.value
    return out


def test_metrics_report_what_the_lane_did_to_a_known_scraper_only(tmp_path: Path) -> None:
    world = World.from_catalog()
    scenario = build_scenario("honest", 31, world, fps=30.0, n_items=3)
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    lane = Lane(
        "lane-m",
        LanePipeline(load_models(), LaneZones.standard(640, 480)),
        LaneCatalog.from_file(),
        outbox,
    )
    access = LaneAccess("screen-key-for-these-tests", metrics_tokens=(TOKEN,))
    app = create_lane_app(lane, ScreenHub(), live_clock=False, access=access)
    # No scans at all: every item that passes is an unscanned item.
    till = {"event_id": "e1", "transaction_id": "t-m", "t": 0.0}
    lane.on_input(PosMessage(type="transaction_start", **till))
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    for index in range(scenario.n_frames):
        lane.process_frame(renderer.render(index)[0], index / scenario.fps)
    lane.on_input(PosMessage(type="transaction_end", **{**till, "event_id": "e2"}))
    outcome = lane.last_outcome
    assert outcome is not None
    unscanned = sum(a.type == "unscanned_item" for a in outcome.alerts)
    assert unscanned == 3

    with serve(app) as url:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = httpx.get(f"{url}/metrics", headers=headers)
            assert refused.status_code == 401 and "metrics token" in refused.json()["detail"]
        answer = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    got = samples(answer.text)
    frames = scenario.n_frames
    assert got[("laneguard_lane_frames_total", ())] == frames
    assert got[("laneguard_lane_frame_seconds_count", ())] == frames
    assert got[("laneguard_lane_detector_seconds_count", ())] == frames
    assert got[("laneguard_lane_items_counted_total", ())] == 3
    # Items counted in the worker reached the lane: each one's identification was timed.
    assert got[("laneguard_lane_embedder_seconds_count", ())] == 3
    assert got[("laneguard_lane_embedder_seconds_sum", ())] > 0
    assert got[("laneguard_lane_alerts_total", (("type", "unscanned_item"),))] == unscanned
    assert got[("laneguard_lane_transactions_total", ())] == 1
    assert got[("laneguard_lane_outbox_depth", (("kind", "transaction"),))] == 1
    assert got[("laneguard_lane_outbox_depth", (("kind", "alert"),))] == unscanned
    assert got[("laneguard_lane_outbox_oldest_age_seconds", ())] >= 0
    assert got[("laneguard_lane_camera_up", ())] == 1.0
    version = lane.model_version
    assert (
        got[
            (
                "laneguard_lane_bundle_info",
                (("gallery", lane.gallery_version), ("version", version)),
            )
        ]
        == 1.0
    )
    outbox.close()


def test_with_no_metrics_tokens_only_this_computer_may_scrape() -> None:
    access = LaneAccess("screen-key-for-these-tests")
    assert access.metrics_allowed({}, "127.0.0.1")
    assert access.metrics_allowed({}, "::1")
    assert not access.metrics_allowed({}, "10.0.0.7")
    assert not access.metrics_allowed({"authorization": "Bearer anything"}, "10.0.0.7")
    tokened = LaneAccess("screen-key-for-these-tests", metrics_tokens=(TOKEN,))
    assert not tokened.metrics_allowed({}, "127.0.0.1")  # a token is set: loopback needs it too
    assert tokened.metrics_allowed({"authorization": f"Bearer {TOKEN}"}, "10.0.0.7")
    # The till's token is not a scraper's, nor the other way round.
    both = LaneAccess(
        "screen-key-for-these-tests", pos_tokens=("till-token",), metrics_tokens=(TOKEN,)
    )
    assert not both.metrics_allowed({"authorization": "Bearer till-token"}, "10.0.0.7")
    assert not both.pos_allowed({"authorization": f"Bearer {TOKEN}"}, "10.0.0.7")


def test_a_lane_that_saw_nothing_reports_zeros(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    lane = Lane(
        "lane-z", LanePipeline(load_models(), LaneZones.standard()), LaneCatalog.from_file(), outbox
    )
    app = create_lane_app(lane, ScreenHub(), live_clock=False)
    with serve(app) as url:
        got = samples(httpx.get(f"{url}/metrics").text)  # from this computer: no token needed
    for name in (
        "laneguard_lane_frames_total",
        "laneguard_lane_detector_seconds_count",
        "laneguard_lane_items_counted_total",
        "laneguard_lane_outbox_oldest_age_seconds",
    ):
        assert got[(name, ())] == 0, name
    assert not [key for key in got if key[0] == "laneguard_lane_alerts_total"]
    outbox.close()


def test_a_bundle_staged_mid_frame_waits_for_that_frame(tmp_path: Path) -> None:
    """The updater stages a new bundle while the camera thread is inside a frame (outside the
    lane's lock): the pipeline that frame is in is neither closed nor swapped under it; the
    new one goes live before the next frame."""
    import threading

    import numpy as np

    models = load_models()
    old = LanePipeline(models, LaneZones.standard(640, 480))
    new = LanePipeline(models, LaneZones.standard(640, 480))
    lane = Lane("lane-s", old, LaneCatalog.from_file(), Outbox(tmp_path / "outbox.sqlite3"))
    inside, release = threading.Event(), threading.Event()
    real_process = old.process

    def held_in_the_frame(image: np.ndarray, t: float):  # type: ignore[no-untyped-def]
        inside.set()
        assert release.wait(10)
        return real_process(image, t)

    old.process = held_in_the_frame  # type: ignore[method-assign]
    frame = np.full((480, 640, 3), 200, np.uint8)
    camera = threading.Thread(target=lane.process_frame, args=(frame, 0.0))
    camera.start()
    assert inside.wait(10)
    went_live: list[bool] = []
    lane.stage_pipeline(new, lambda: went_live.append(True))
    assert lane.pipeline is old and not went_live, "swapped under a frame"
    assert old._worker is None or not old._worker._shutdown, "closed under a frame"
    release.set()
    camera.join(10)
    assert not camera.is_alive() and lane.counters.frames == 1
    lane.process_frame(frame, 0.1)  # the next frame: the new bundle first
    assert lane.pipeline is new and went_live == [True] and lane.counters.frames == 2


def test_bundles_swapped_under_load_lose_no_frame_and_no_item(tmp_path: Path) -> None:
    """The camera thread runs transactions of real rendered frames non-stop while the till ends
    and starts them and the updater stages a new bundle after each: every frame is processed,
    every bundle goes live between transactions, every item is counted in the transaction it
    passed in, and no frame or item meets a closed pipeline (its worker would refuse it)."""
    import threading

    world = World.from_catalog()
    scenario = build_scenario("honest", 32, world, fps=30.0, n_items=2)
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    frames = [renderer.render(index)[0] for index in range(scenario.n_frames)]
    models = load_models()
    lane = Lane(
        "lane-load",
        LanePipeline(models, LaneZones.standard(640, 480)),
        LaneCatalog.from_file(),
        Outbox(tmp_path / "outbox.sqlite3"),
    )
    rounds, went_live, failures = 3, [], []
    started = [threading.Event() for _ in range(rounds)]
    passed = [threading.Event() for _ in range(rounds)]

    def camera() -> None:
        try:
            for round_ in range(rounds):
                assert started[round_].wait(30)
                for index, frame in enumerate(frames):
                    lane.process_frame(frame, round_ * 100 + index / scenario.fps)
                passed[round_].set()
        except BaseException as error:  # reported to the test's thread below
            failures.append(error)
            for event in passed:
                event.set()

    thread = threading.Thread(target=camera)
    thread.start()
    for round_ in range(rounds):
        till = {"event_id": f"s{round_}", "transaction_id": f"t-{round_}", "t": round_ * 100.0}
        lane.on_input(PosMessage(type="transaction_start", **till))
        started[round_].set()
        # Staged while the transaction's frames run: it must wait for the transaction's end.
        lane.stage_pipeline(
            LanePipeline(models, LaneZones.standard(640, 480)),
            lambda round_=round_: went_live.append(round_),  # type: ignore[misc]
        )
        assert passed[round_].wait(120)
        end = {**till, "event_id": f"e{round_}", "t": round_ * 100.0 + 50}
        lane.on_input(PosMessage(type="transaction_end", **end))
        assert lane.last_outcome is not None and lane.last_outcome.transaction_id == f"t-{round_}"
        assert len(lane.last_outcome.seen) == 2, f"round {round_}: items lost in the swap"
    thread.join(30)
    assert not failures, failures
    assert lane.counters.frames == rounds * len(frames)
    assert went_live == list(range(rounds))
