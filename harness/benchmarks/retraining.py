"""`laneguard bench retraining`: the slow path on a store that harvested new products and new
packaging, with the shipped bundle in production.

A real store server (SQLite, its ingest API and fast-path learner) receives, from one enrolled
lane, the honest crops of every product the shipped models never saw and of some known products
in their redesigned packaging, a few transactions of each over a day. Then one `train run`
pass with the default recipe: dataset, fine-tuning from the shipped bundle's weights, gate.

Measured: the gate's metrics for production (the shipped bundle plus what the fast path
learned, as the lanes run it) and for the candidate, per product, and the pass's duration.
"""

from __future__ import annotations

import base64
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

TRANSACTIONS_PER_PRODUCT = 8
CROPS_PER_TRANSACTION = 2
PACKAGING_CHANGES = 5


def _messages(folder: Path, lane: str, start: int) -> list[dict[str, Any]]:
    """Honest sample messages for the crops in ``folder/<code>/``, a transaction every
    ``CROPS_PER_TRANSACTION`` crops, spread over the past day (oldest first), each
    transaction's own message (which scanned the code) before its crops, as a lane sends
    them: the store lets a crop teach only when it holds its honest transaction."""
    from laneguard.wire import SampleMessage, ScannedEntry, TransactionMessage
    from product_db.models import utcnow

    messages, n = [], start
    now = utcnow()
    for code_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        crops = sorted(code_folder.glob("*.jpg"))
        for index, crop in enumerate(crops):
            transaction = index // CROPS_PER_TRANSACTION
            at = now - timedelta(hours=24 - 3 * transaction)
            if index % CROPS_PER_TRANSACTION == 0:
                scans = min(CROPS_PER_TRANSACTION, len(crops) - index)
                messages.append(
                    TransactionMessage(
                        message_id=f"{lane}:tx:{code_folder.name}-{transaction}",
                        lane_id=lane,
                        transaction_id=f"tx-{code_folder.name}-{transaction}",
                        started_at=at,
                        ended_at=at,
                        honest=True,
                        seen=[],
                        scanned=[
                            ScannedEntry(
                                event_id=f"s{k}",
                                t=float(k),
                                code=code_folder.name,
                                key=code_folder.name,
                                quantity=1,
                                source="scanner",
                            )
                            for k in range(scans)
                        ],
                    ).model_dump(mode="json")
                )
            n += 1
            messages.append(
                SampleMessage(
                    message_id=f"{lane}:sample:{n}",
                    lane_id=lane,
                    transaction_id=f"tx-{code_folder.name}-{transaction}",
                    track_id=index,
                    code=code_folder.name,
                    vision_code=None,
                    band="unknown",
                    score=0.0,
                    reason="honest",
                    crop_jpeg_b64=base64.b64encode(crop.read_bytes()).decode(),
                    captured_at=at,
                ).model_dump(mode="json")
            )
    return messages


def run(
    produce_photos: Path | None = None,
    progress: Callable[[str], None] = print,
    bundle: Path | None = None,
    config: Any = None,
) -> dict[str, Any]:
    """``bundle`` is production (default: the shipped one), ``config`` the recipe
    (default: TrainRunConfig's defaults)."""
    from laneguard.bundle import SHIPPED_BUNDLE
    from laneguard.serving import serve_in_thread
    from product_db.db import make_engine
    from simulator.datasets import write_embed_dataset
    from simulator.world import World
    from store_server.app import create_app
    from store_server.db import migrate
    from store_server.lanes import issue_enrolment_token
    from store_server.settings import StoreSettings
    from trainer.finetune import TrainRunConfig
    from trainer.store_training import StoreTrainer

    world = World.from_catalog(produce_photos=produce_photos)
    new = [p.code for p in world.new_products]
    redesigned = [p.code for p in world.known if not p.is_produce][:PACKAGING_CHANGES]
    per_product = TRANSACTIONS_PER_PRODUCT * CROPS_PER_TRANSACTION
    with tempfile.TemporaryDirectory(prefix="laneguard-retrain-") as scratch:
        root = Path(scratch)
        write_embed_dataset(
            world,
            root / "crops-new",
            per_product,
            seed=11,
            selection="holdout",
            photo_splits=("test",),
        )
        write_embed_dataset(
            world,
            root / "crops-v2",
            per_product,
            seed=11,
            version=2,
            codes=redesigned,
            photo_splits=("test",),
        )
        url = f"sqlite:///{root / 'store.sqlite3'}"
        settings = StoreSettings(
            database_url=url, data_dir=root / "store", bundle=bundle or SHIPPED_BUNDLE
        )
        engine = make_engine(url)
        migrate(engine)
        with serve_in_thread(create_app(settings)) as base:
            token = issue_enrolment_token(engine, "lane-1", created_by="bench")
            credential = httpx.post(f"{base}/api/v1/enrol", json={"token": token}).json()[
                "credential"
            ]
            messages = _messages(root / "crops-new", "lane-1", 0)
            messages += _messages(root / "crops-v2", "lane-1", len(messages))
            for first in range(0, len(messages), 100):
                reply = httpx.post(
                    f"{base}/api/v1/ingest",
                    json={"messages": messages[first : first + 100]},
                    headers={"Authorization": f"Bearer {credential}"},
                    timeout=60,
                )
                reply.raise_for_status()
            progress(
                f"{sum(m['type'] == 'sample' for m in messages)} honest crops of {len(new)} new "
                f"and {len(redesigned)} "
                "redesigned products ingested"
            )
            time.sleep(5.0)  # the fast path's learner runs beside the ingest; let it settle
            trainer = StoreTrainer(
                engine,
                settings,
                config or TrainRunConfig(produce_photos=produce_photos),
                root / "work",
            )
            start = time.perf_counter()
            result = trainer.run_once(progress)
            seconds = round(time.perf_counter() - start, 1)
        engine.dispose()
    gate = result.report["gate"]

    def per_code(codes: list[str]) -> dict[str, dict[str, float | None]]:
        return {
            code: {
                "production": gate["production"]["harvest_per_code"].get(code),
                "candidate": gate["candidate"]["harvest_per_code"].get(code),
            }
            for code in codes
        }

    return {
        "seconds": seconds,
        "parent": result.report["parent"],
        "harvest": result.report["harvest"],
        "passed": gate["passed"],
        "failed": gate["failed"],
        "checks": gate["checks"],
        "new_products": per_code(new),
        "packaging_changes": per_code(redesigned),
    }
