"""How long a lane takes to go from "the store assigned me a new bundle" to running it, and how
long a rollout with a broken bundle takes to halt.

A real store server (SQLite) publishes two signed bundles, a good one and one whose detector
is not a detector; a real lane service (not started: its updater is driven pass by pass) takes
the good one, step by step, timed from the updater's own step log; the broken one is offered
to it as the canary of a second rollout, which the store's rollout judgement then rolls back.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session

from checkout_node.service import LaneService
from checkout_node.settings import LaneSettings
from harness.drills import not_a_detector
from laneguard.bundle import SHIPPED_BUNDLE, derive_bundle, sha256_file
from laneguard.signing import load_private_key, new_keypair, sign_bundle
from product_db.db import make_engine


class _StepTimes(logging.Handler):
    """When the updater entered each step (its log says)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("update step: "):
            self.times.append((message.removeprefix("update step: "), time.perf_counter()))


def run() -> dict[str, Any]:
    from store_server.lanes import issue_enrolment_token
    from store_server.learning import store_key_id
    from store_server.rollouts import HealthLimits, RolloutLoop, publish_bundle, start_rollout
    from store_server.served import serve_store
    from store_server.settings import StoreSettings

    with tempfile.TemporaryDirectory(prefix="laneguard-update-bench-") as tmp:
        folder = Path(tmp)
        private, public = new_keypair(folder / "keys")
        key = load_private_key(private)
        base = sign_bundle(SHIPPED_BUNDLE, key, folder / "base.tar.gz", release=1)
        good = sign_bundle(SHIPPED_BUNDLE, key, folder / "good.tar.gz", release=2)
        broken = sign_bundle(
            derive_bundle(
                SHIPPED_BUNDLE, folder / "broken.unsigned", replace=not_a_detector(SHIPPED_BUNDLE)
            ),
            key,
            folder / "broken.tar.gz",
            release=3,
        )
        database_url = f"sqlite:///{folder / 'store.sqlite3'}"
        settings = StoreSettings(
            database_url=database_url,
            data_dir=folder / "store",
            discovery_port=0,
            rollout_check_s=3600,
        )
        engine = make_engine(database_url)
        with serve_store(settings) as url:
            ids = {}
            with Session(engine) as session:
                for name, bundle in (("good", good), ("broken", broken)):
                    release = publish_bundle(session, settings.data_dir, bundle, "bench")
                    assert release.id is not None
                    ids[name] = release.id
                session.commit()
            service = LaneService(
                LaneSettings(
                    lane_id="lane-1",
                    camera="/dev/null",
                    bundle=base,
                    bundle_keys=[public],
                    server_url=url,
                    enrolment_token=issue_enrolment_token(
                        engine, "lane-1", created_by="bench", store_key_id=store_key_id(settings)
                    ),
                    data_dir=folder / "lane",
                )
            )
            assert service.updater is not None and service.uploader is not None
            service.queue_heartbeat(25.0)
            service.uploader.deliver_once()  # enrols
            with Session(engine) as session:
                start_rollout(session, ids["good"], ["lane-1"], "bench", (1.0,), soak_s=0)
                session.commit()
            steps = _StepTimes()
            logger = logging.getLogger("laneguard.node.updater")
            logger.addHandler(steps)
            logger.setLevel(logging.INFO)
            start = time.perf_counter()
            outcome = service.updater.poll_once()
            took = time.perf_counter() - start
            marks = [("asked", start), *steps.times, ("live", start + took)]
            durations = {
                name: round(after - at, 2)
                for (name, at), (_, after) in zip(marks, marks[1:])
                if name != "idle"
            }
            loop = RolloutLoop(engine, HealthLimits())
            service.queue_heartbeat(25.0)
            service.uploader.deliver_once()
            loop.run_once()  # the canary is healthy: promoted to all lanes ...
            loop.run_once()  # ... which all run it: completed
            with Session(engine) as session:
                rollout = start_rollout(session, ids["broken"], ["lane-1"], "bench", (1.0,), 0)
                session.commit()
                broken_rollout = rollout.id
            halt_start = time.perf_counter()
            refused = service.updater.poll_once()
            service.queue_heartbeat(25.0)
            service.uploader.deliver_once()
            halted = loop.run_once()
            halt_s = time.perf_counter() - halt_start
            logger.removeHandler(steps)
            service.outbox.close()
        engine.dispose()
        return {
            "bundle_mb": round(good.stat().st_size / 2**20, 2),
            "bundle_sha256": sha256_file(good)[:16],
            "outcome": outcome,
            "seconds_to_live": round(took, 2),
            "seconds_per_step": durations,
            "broken_bundle": refused,
            "broken_rollout": broken_rollout,
            "broken_rollout_result": halted[1] if halted else None,
            "seconds_from_offer_to_rollback": round(halt_s, 2),
        }
