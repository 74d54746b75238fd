"""`laneguard bench learning`: a product no model has seen (or a known product in new
packaging), learned from honest transactions.

End to end with the real parts: a store server (SQLite, its learner and signed gallery
updates), one enrolled lane (real pipeline, reconciliation, outbox, uploader and gallery
follower) fed simulated checkouts that contain a product the shipped models were never trained
on, each scanned honestly. After each transaction the lane delivers its outbox and waits for
the store's gallery to reach it; the next transaction shows whether the lane now recognises the
product. Finally the product passes unscanned: the alert must name it.

Measured: honest transactions until the lane recognises the product, and the seconds from the
delivery of the transaction that taught it to the lane holding the new gallery.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from laneguard.serving import serve_in_thread

KINDS = ("new_product", "packaging_change")


def _featured(scenario: Any, kind: str) -> list[str]:
    return list(scenario.new_products if kind == "new_product" else scenario.packaging_changes)


def _scenarios_with(product_code: str, world: Any, fps: float, kind: str) -> Iterator[Any]:
    """Honest checkouts of ``kind`` (seeds in order) that feature ``product_code``: a product
    no model has seen, or a known product in its redesigned packaging."""
    from simulator.scenario import build_scenario

    seed = 0
    while True:
        scenario = build_scenario(kind, seed, world, fps=fps)
        if product_code in _featured(scenario, kind):
            yield scenario
        seed += 1


def _play(lane: Any, scenario: Any, world: Any, drop_code: str | None = None) -> Any:
    """Run one checkout through ``lane``; ``drop_code``: that product passes unscanned."""
    from product_db.codes import parse_code
    from simulator.recording import lane_inputs
    from simulator.scene import SceneRenderer

    events = sorted(lane_inputs(scenario), key=lambda e: e.t)
    if drop_code is not None:
        events = [
            e for e in events if not (e.type == "scan" and parse_code(e.code).key == drop_code)
        ]
    renderer = SceneRenderer(scenario, world, photo_splits=("test",))
    for index in range(scenario.n_frames):
        t = index / scenario.fps
        while events and events[0].t <= t:
            lane.on_input(events.pop(0))
        lane.process_frame(renderer.render(index)[0], t)
    for event in events:
        lane.on_input(event)
    if lane.transaction is not None:
        lane.end_transaction(scenario.duration, reason="eval end")
    return lane.last_outcome


def run(
    max_transactions: int = 8,
    fps: float = 15.0,
    progress: Callable[[str], None] = print,
    kind: str = "new_product",
) -> dict[str, Any]:
    """``kind``: "new_product" (a product the models never saw) or "packaging_change" (a known
    product in packaging the models never saw)."""
    from checkout_node.catalog import LaneCatalog
    from checkout_node.enrolment import load_credential
    from checkout_node.gallery_follower import GalleryFollower
    from checkout_node.lane import Lane
    from checkout_node.model_bundle import load_models
    from checkout_node.outbox import Outbox
    from checkout_node.uploader import Enrolment, Uploader
    from checkout_node.vision.counting import LaneZones
    from checkout_node.vision.pipeline import LanePipeline
    from product_db.db import make_engine
    from simulator.scenario import build_scenario
    from simulator.world import World
    from store_server.app import create_app
    from store_server.db import migrate
    from store_server.lanes import issue_enrolment_token
    from store_server.settings import StoreSettings

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    world = World.from_catalog()
    featured = _featured(build_scenario(kind, 0, world, fps=fps), kind)[0]
    product = next(p for p in world.products if p.code == featured)
    models = load_models()
    catalog = LaneCatalog.from_file()
    with tempfile.TemporaryDirectory(prefix="laneguard-learning-") as tmp:
        root = Path(tmp)
        url = f"sqlite:///{root / 'store.sqlite3'}"
        engine = make_engine(url)
        migrate(engine)
        token = issue_enrolment_token(engine, "lane-learn", created_by="bench")
        engine.dispose()
        settings = StoreSettings(database_url=url, data_dir=root / "store")
        with serve_in_thread(create_app(settings)) as store_url:
            outbox = Outbox(root / "lane" / "outbox.sqlite3")
            lane = Lane("lane-learn", LanePipeline(models, LaneZones.standard()), catalog, outbox)
            uploader = Uploader(
                outbox, store_url, enrolment=Enrolment(token, root / "lane", "lane-learn")
            )

            def store_key() -> str | None:
                kept = load_credential(root / "lane")
                return kept.gallery_key if kept else None

            follower = GalleryFollower(
                store_url,
                lambda: uploader.token,
                store_key,
                models.gallery,
                lane.stage_gallery,
                root / "lane",
            )
            scenarios = _scenarios_with(product.code, world, fps, kind)
            history: list[dict[str, Any]] = []
            learned_after: int | None = None
            gallery_seconds: float | None = None
            for n in range(1, max_transactions + 1):
                outcome = _play(lane, next(scenarios), world)
                mine = [e for e in outcome.seen if e["code"] == product.code]
                recognised = any(e["vision_code"] == product.code for e in mine)
                history.append(
                    {
                        "transaction": n,
                        "honest": outcome.honest,
                        "product_counted": bool(mine),
                        "recognised": recognised,
                        "band": mine[0]["band"] if mine else None,
                        "score": mine[0]["score"] if mine else None,
                    }
                )
                progress(f"transaction {n}: {history[-1]}")
                if recognised:
                    learned_after = n - 1  # the transactions before this one taught it
                    break
                delivered_at = time.monotonic()
                while any(outbox.depth().values()):
                    uploader.deliver_once()
                before = lane.gallery_version
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and lane.gallery_version == before:
                    follower.poll_once()
                    if lane.gallery_version == before:
                        time.sleep(0.25)
                if lane.gallery_version != before and gallery_seconds is None:
                    gallery_seconds = round(time.monotonic() - delivered_at, 2)
            skip = _play(lane, next(scenarios), world, drop_code=product.code)
            alerts = [a.to_json() for a in skip.alerts if a.type == "unscanned_item"]
            uploader.stop()
            follower.stop()
            outbox.close()
    return {
        "kind": kind,
        "product": {"code": product.code, "name": product.name},
        "min_transactions": settings.learn_min_transactions,
        "transactions": history,
        "recognised_after_honest_transactions": learned_after,
        "seconds_from_delivery_to_lane_gallery": gallery_seconds,
        "skip_scan_alerts": alerts,
        "skip_scan_alert_names_product": any(a.get("seen_code") == product.code for a in alerts),
    }
