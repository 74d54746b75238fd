"""The chain at scale, simulated on this computer.

1. HQ ingest: HQ (the real app: JetStream link, intake, outbox) on SQLite and on PostgreSQL,
   a private NATS JetStream server, and N simulated stores publishing their samples (real
   simulator crops as JPEG, each envelope signed with its store's own key, as a store's link
   does) as fast as the broker takes them; samples/s is all samples over the time from the
   first publish to the last stored at HQ.
2. Training at HQ as the chain grows: 1, 2 and 4 stores, each with the same number of honest
   transactions, pooled into HQ through its intake; one quick slow-path pass each (the same
   recipe throughout), timed by phase: pooling and split, fine-tune, chain-wide gate,
   per-store gate.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, text
from sqlmodel import Session, select

from laneguard.chain import SampleUp, seal, store_subject
from laneguard.serving import free_port

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _turned(world: Any, product: Any, seed: int, angle: float, scale: float, quality: int) -> bytes:
    """A simulator crop of ``product`` as a lane would send it, turned and scaled a little."""
    sprite = world.sprite(product, 1, Random(seed))
    image = cv2.resize(sprite.bgr, None, fx=0.5, fy=0.5)
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, scale)
    image = cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)
    return bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1])


def _crops(n: int, seed: int = 0) -> list[bytes]:
    """``n`` real simulator crops of several products."""
    from simulator.world import World

    world = World.from_catalog()
    rng = Random(seed)
    return [
        _turned(
            world, world.products[i % len(world.products)], seed + i, rng.uniform(-12, 12), 1.0, 90
        )
        for i in range(n)
    ]


def _crops_of(world: Any, code: str, n: int) -> list[bytes]:
    """At least 4 crops of one product, differing enough for the trainer's duplicate filter."""
    product = next(p for p in world.products if p.code == code)
    rng = Random(code)
    return [
        _turned(world, product, i, rng.uniform(-20, 20), rng.uniform(0.85, 1.15), 95)
        for i in range(max(n, 4))
    ]


def _sample(n: int, crop: bytes, code: str, transaction: str) -> SampleUp:
    from product_db.models import utcnow

    return SampleUp(
        sample_id=n,
        lane_id=f"lane-{n % 20 + 1}",
        transaction_id=transaction,
        track_id=1,
        code=code,
        vision_code=None,
        band="unknown",
        score=0.5,
        reason="honest",
        review="pending",
        captured_at=utcnow(),
        image_b64=base64.b64encode(crop).decode(),
    )


def _enrol(engine: Any, stores: int) -> list[Ed25519PrivateKey]:
    from hq_server.stores import add_store, enrol_store
    from laneguard.signing import public_pem

    keys = [Ed25519PrivateKey.generate() for _ in range(stores)]
    with Session(engine) as session:
        for index, key in enumerate(keys):
            token = add_store(session, f"S{index:03d}", f"Store {index}", "bench")
            enrol_store(session, token, "", public_pem(key))
        session.commit()
    return keys


def _postgres_database() -> tuple[str, Callable[[], None]] | None:
    """A fresh database on the local PostgreSQL server, and how to drop it (None: no server)."""
    from sqlalchemy.engine import make_url

    from product_db.db import make_engine

    name = f"lg_bench_{uuid.uuid4().hex[:10]}"
    try:
        admin = make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        return None

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False), drop


async def _publish(url: str, envelopes: list[tuple[str, str, bytes]]) -> float:
    import nats

    client = await nats.connect(url)
    js = client.jetstream(timeout=30)
    started = time.perf_counter()
    for start in range(0, len(envelopes), 500):
        await asyncio.gather(
            *(
                js.publish(subject, data, headers={"Nats-Msg-Id": message_id})
                for subject, message_id, data in envelopes[start : start + 500]
            )
        )
    seconds = time.perf_counter() - started
    await client.close()
    return seconds


def ingest(stores: int, per_store: int, database: str, crops: list[bytes]) -> dict[str, Any]:
    """One HQ, ``stores`` stores, ``per_store`` samples each; ``database`` sqlite/postgresql."""
    from hq_server.app import create_app
    from hq_server.models import PooledSample
    from hq_server.settings import HqSettings
    from laneguard.serving import serve_in_thread
    from product_db.db import make_engine

    binary = shutil.which("nats-server")
    if binary is None:
        return {"skipped": "nats-server is not installed"}
    dropper: Callable[[], None] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if database == "postgresql":
            made = _postgres_database()
            if made is None:
                return {"skipped": f"no PostgreSQL server at {POSTGRES_URL}"}
            url, dropper = made
        else:
            url = f"sqlite:///{folder / 'hq.sqlite3'}"
        port = free_port()
        broker = subprocess.Popen(
            [binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(folder / "nats")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            nats_url = f"nats://127.0.0.1:{port}"
            settings = HqSettings(database_url=url, data_dir=folder / "hq", nats_url=nats_url)
            app = create_app(settings)
            with serve_in_thread(app):
                engine = make_engine(url)
                keys = _enrol(engine, stores)
                envelopes = []
                for index, key in enumerate(keys):
                    store_id = f"S{index:03d}"
                    for n in range(1, per_store + 1):
                        crop = crops[(index * per_store + n) % len(crops)]
                        body = _sample(n, crop, "4011", f"tx-{n // 3}")
                        message_id = f"{store_id}:sample:{n}"
                        envelopes.append(
                            (
                                store_subject(store_id, "sample"),
                                message_id,
                                seal(store_id, message_id, body, key),
                            )
                        )
                total = len(envelopes)
                started = time.perf_counter()
                publish_s = asyncio.run(_publish(nats_url, envelopes))
                stored = 0
                deadline = time.perf_counter() + 600
                while stored < total and time.perf_counter() < deadline:
                    with Session(engine) as session:
                        stored = int(
                            session.exec(select(func.count()).select_from(PooledSample)).one()
                        )
                    time.sleep(0.1)
                seconds = time.perf_counter() - started
                engine.dispose()
        finally:
            broker.kill()
            broker.wait()
            if dropper is not None:
                dropper()
    size = float(np.mean([len(e[2]) for e in envelopes]))
    return {
        "database": database,
        "stores": stores,
        "samples": total,
        "stored": stored,
        "envelope_kb": round(size / 1024, 1),
        "publish_s": round(publish_s, 2),
        "seconds": round(seconds, 2),
        "samples_per_s": round(stored / seconds, 1),
    }


def training(stores: int, transactions: int) -> dict[str, Any]:
    """One quick HQ pass over ``stores`` stores with ``transactions`` honest transactions each
    (two crops of one of four products per transaction), timed by phase."""
    from hq_server.db import migrate
    from hq_server.intake import Intake
    from hq_server.models import PooledSample
    from hq_server.outbox import HqOutbox
    from hq_server.settings import HqSettings
    from product_db.db import make_engine
    from simulator.world import World
    from store_server.media import MediaStore
    from trainer.chain_training import ChainTrainer
    from trainer.finetune import TrainRunConfig
    from trainer.gate import GatePolicy

    world = World.from_catalog()
    codes = [p.code for p in world.new_products[:2]] + [p.code for p in world.known[:2]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = HqSettings(database_url=f"sqlite:///{folder / 'hq.sqlite3'}", data_dir=folder)
        engine = make_engine(settings.database_url)
        migrate(engine)
        keys = _enrol(engine, stores)
        intake = Intake(
            engine, MediaStore(folder / "media"), HqOutbox(engine, Ed25519PrivateKey.generate())
        )
        pictures = {code: _crops_of(world, code, stores * transactions) for code in codes}
        started = time.perf_counter()
        for index, key in enumerate(keys):
            store_id = f"S{index:03d}"
            n = 0
            for t in range(transactions):
                code = codes[t % len(codes)]
                for _ in range(2):
                    n += 1
                    crop = pictures[code][(index * transactions + t + n) % len(pictures[code])]
                    body = _sample(n, crop, code, f"tx-{t}")
                    message_id = f"{store_id}:sample:{n}"
                    intake.handle(
                        store_subject(store_id, "sample"), seal(store_id, message_id, body, key)
                    )
        pooling_s = time.perf_counter() - started
        with Session(engine) as session:
            pooled = int(session.exec(select(func.count()).select_from(PooledSample)).one())
        marks: list[tuple[str, float]] = []

        def progress(line: str) -> None:
            for phase in ("1/5", "2/5", "3/5", "4/5", "5/5", "per-store gate"):
                if line.startswith(phase):
                    marks.append((phase, time.perf_counter()))

        trainer = ChainTrainer(
            engine,
            settings,
            TrainRunConfig.quick(policy=GatePolicy(1.0, 0.0), detector_epochs=0, embed_epochs=1),
            folder / "work",
            publish=False,
        )
        started = time.perf_counter()
        report = trainer.run_once(progress).report
        ended = time.perf_counter()
        engine.dispose()
    at = dict(marks)
    return {
        "stores": stores,
        "samples": pooled,
        "train_crops": report["harvest"]["train_crops"],
        "held_out_crops": report["harvest"]["test_crops"],
        "intake_s": round(pooling_s, 2),
        "dataset_s": round(at["2/5"] - started, 2),
        "fine_tune_s": round(at["5/5"] - at["2/5"], 2),
        "chain_gate_s": round(at["per-store gate"] - at["5/5"], 2),
        "per_store_gate_s": round(ended - at["per-store gate"], 2),
        "total_s": round(ended - started, 2),
        "stores_judged": len(report["per_store"]),
        "stores_not_judged": len(report["stores_not_judged"]),
    }


def paper_estimate(samples_per_s: float, training: list[dict[str, Any]]) -> dict[str, Any]:
    """What 300 stores of 20 lanes would need, from the measured rates (stated assumptions)."""
    lanes = 300 * 20
    # A lane: ~400 transactions a day, 12 items each; lanes send crops of the items they did
    # not already recognise with trust, plus a 5% sample of the rest: ~15% of items, one crop.
    per_lane_day = 400 * 12 * 0.15
    per_day = lanes * per_lane_day
    busiest_hour_share = 0.12  # of a day's transactions
    peak_per_s = per_day * busiest_hour_share / 3600
    last = training[-1]
    per_held_out_s = last["per_store_gate_s"] / max(last["stores_judged"], 1)
    return {
        "lanes": lanes,
        "samples_per_day": round(per_day),
        "peak_samples_per_s": round(peak_per_s, 1),
        "hq_ingest_measured_samples_per_s": samples_per_s,
        "hq_ingest_consumers_needed_at_peak": int(np.ceil(peak_per_s / samples_per_s)),
        "pooled_crops_per_week": round(per_day * 7),
        "per_store_gate_s_per_store_measured": round(per_held_out_s, 2),
        "per_store_gate_300_stores_s": round(per_held_out_s * 300, 1),
    }


def run(
    ingest_sizes: tuple[tuple[int, int], ...] = ((10, 100), (50, 40), (200, 10)),
    training_stores: tuple[int, ...] = (1, 2, 4),
    transactions: int = 24,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    crops = _crops(200)
    ingest_runs = []
    for database in ("sqlite", "postgresql"):
        for stores, per_store in ingest_sizes:
            progress(f"ingest: {stores} stores x {per_store} samples on {database}")
            ingest_runs.append(ingest(stores, per_store, database, crops))
    training_runs = []
    for stores in training_stores:
        progress(f"training: {stores} stores x {transactions} transactions")
        training_runs.append(training(stores, transactions))
    measured = [r["samples_per_s"] for r in ingest_runs if "samples_per_s" in r]
    return {
        "ingest": ingest_runs,
        "training": training_runs,
        "chain_of_300_stores": paper_estimate(min(measured) if measured else 0.0, training_runs),
    }
