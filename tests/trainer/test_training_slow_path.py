"""The slow path of learning: crops harvested by a real store server (over its ingest API)
become a dataset (deduplicated, split by transaction and time), a candidate fine-tuned from the
production bundle's own weights, a gate against production, and a published (or refused)
bundle with its report, audited; `train watch` runs a pass when enough crops arrive."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from random import Random

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from checkout_node.model_bundle import load_models
from laneguard.bundle import Manifest, extract_bundle, read_manifest
from laneguard.cli import main as laneguard_cli
from laneguard.embedding import Embedder
from laneguard.wire import FrameBox, FrameMessage, SampleMessage
from product_db.db import make_engine
from product_db.models import utcnow
from simulator.datasets import DETECT_NAMES, write_detect_dataset, write_embed_dataset
from simulator.world import World
from store_server.app import create_app
from store_server.auth import create_user
from store_server.media import MediaStore
from store_server.models import AuditEntry, BundleRelease, GalleryEntry, SampleRecord
from store_server.settings import StoreSettings
from tests.helpers.live_server import enrol, serve, sign_in
from tests.helpers.messages import as_json, vouching_transactions
from trainer.embedder import EmbedderRun, export_embedder_onnx
from trainer.finetune import TrainRunConfig, store_entries
from trainer.gate import GatePolicy, judge
from trainer.harvest import HarvestConfig, build_dataset, harvested_crops
from trainer.store_training import StoreTrainer

NEW_TRANSACTIONS = 6  # honest transactions with the product the models never saw
KNOWN_TRANSACTIONS = 4


@pytest.fixture(scope="module")
def crops(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """Lane-like crops: one product held out of every model, and one the models know."""
    world = World.from_catalog()
    folder = tmp_path_factory.mktemp("crops")
    write_embed_dataset(world, folder / "new", 2 * NEW_TRANSACTIONS, seed=7, selection="holdout")
    write_embed_dataset(world, folder / "known", 2 * KNOWN_TRANSACTIONS, seed=7)
    new_code = world.new_products[0].code
    known_code = next(p.code for p in world.known if not p.is_produce)
    return {
        new_code: [p.read_bytes() for p in sorted((folder / "new" / new_code).glob("*.jpg"))],
        known_code: [p.read_bytes() for p in sorted((folder / "known" / known_code).glob("*.jpg"))],
    }


@pytest.fixture(scope="module")
def camera_frames(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[bytes, list[FrameBox]]]:
    """Lane camera frames with every product's box, as an honest checkout's frames arrive."""
    folder = tmp_path_factory.mktemp("frames")
    write_detect_dataset(World.from_catalog(), folder, 12, seed=11, val_fraction=0.0)
    frames = []
    for image in sorted((folder / "images" / "train").glob("*.jpg")):
        lines = (folder / "labels" / "train" / f"{image.stem}.txt").read_text().split()
        boxes = []
        for index in range(0, len(lines), 5):
            cls, cx, cy, w, h = int(lines[index]), *map(float, lines[index + 1 : index + 5])
            box = ((cx - w / 2) * 640, (cy - h / 2) * 480, (cx + w / 2) * 640, (cy + h / 2) * 480)
            rounded = tuple(
                round(min(max(v, 0.0), 640.0 if i % 2 == 0 else 480.0), 1)
                for i, v in enumerate(box)
            )
            boxes.append(
                FrameBox(
                    box=rounded, label=DETECT_NAMES[cls], kind="track", score=0.9, track_id=index
                )
            )  # type: ignore[arg-type]
        frames.append((image.read_bytes(), boxes))
    return frames


def frame(
    lane: str, n: int, transaction: str, shot: tuple[bytes, list[FrameBox]], minutes: int
) -> dict:
    return FrameMessage(
        message_id=f"{lane}:frame:{n}",
        lane_id=lane,
        transaction_id=transaction,
        reason="honest",
        captured_at=utcnow() - timedelta(minutes=minutes),
        model_version="quick",
        width=640,
        height=480,
        boxes=shot[1],
        frame_jpeg_b64=base64.b64encode(shot[0]).decode(),
    ).model_dump(mode="json")


def sample(lane: str, n: int, transaction: str, code: str, crop: bytes, minutes: int) -> dict:
    return SampleMessage(
        message_id=f"{lane}:sample:{n}",
        lane_id=lane,
        transaction_id=transaction,
        track_id=n,
        code=code,
        vision_code=None,
        band="unknown",
        score=0.4,
        reason="honest",
        crop_jpeg_b64=base64.b64encode(crop).decode(),
        captured_at=utcnow() - timedelta(minutes=minutes),
    ).model_dump(mode="json")


@dataclass
class Store:
    settings: StoreSettings
    crops: dict[str, list[bytes]]  # code -> JPEG crops the lane sent
    url: str


@pytest.fixture
def store(
    tmp_path: Path,
    crops: dict[str, list[bytes]],
    camera_frames: list[tuple[bytes, list[FrameBox]]],
    quick_bundle: tuple[Path, Manifest, list[str]],
) -> Iterator[Store]:
    """A running store server whose lane sent honest crops of both products, two per
    transaction, the oldest transactions first, and camera frames of those transactions;
    production is the quick bootstrap bundle."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    # The quick bundle's one-epoch embedder barely tells products apart, so its own agreement
    # threshold keeps every crop out; this test is about the slow path, the fast path's guard
    # is tested with the shipped bundle (tests/harness/test_gallery_learning.py).
    settings = StoreSettings(
        database_url=url,
        data_dir=tmp_path / "store",
        bundle=quick_bundle[0],
        learn_consistency=-1.0,
    )
    with serve(create_app(settings)) as base:
        credential = enrol(base, url, "lane-1")
        messages, n = [], 0
        for code, pictures in crops.items():
            for index in range(0, len(pictures), 2):
                transaction = f"tx-{code}-{index // 2}"
                for picture in pictures[index : index + 2]:
                    n += 1
                    messages.append(sample("lane-1", n, transaction, code, picture, 100 - index))
                shot = camera_frames[n % len(camera_frames)]
                messages.append(frame("lane-1", n, transaction, shot, 100 - index))
        samples = [m for m in messages if m["type"] == "sample"]
        messages += [as_json(t) for t in vouching_transactions(samples)]
        reply = httpx.post(
            f"{base}/api/v1/ingest",
            json={"messages": messages},
            headers={"Authorization": f"Bearer {credential}"},
            timeout=30,
        )
        assert reply.json()["rejected"] == 0, reply.text
        yield Store(settings, crops, base)


def test_harvest_dedupes_splits_by_transaction_and_time_and_skips_rejected(
    store: Store,
) -> None:
    settings, crops = store.settings, store.crops
    engine = make_engine(settings.database_url)
    media = MediaStore(settings.data_dir / "media")
    new_code, known_code = list(crops)
    with Session(engine) as session:  # a manager rejects one crop of the new product
        rejected = session.exec(select(SampleRecord).where(SampleRecord.code == new_code)).first()
        assert rejected is not None
        rejected_id = rejected.id
        rejected.review = "rejected"
        session.add(rejected)
        session.commit()
    with Session(engine) as session:  # an "of interest" crop a manager labelled in review
        labelled = session.exec(select(SampleRecord).where(SampleRecord.code == known_code)).first()
        assert labelled is not None
        labelled_id = labelled.id
        labelled.reason, labelled.code = "of_interest", None
        labelled.review, labelled.label = "relabelled", known_code
        session.add(labelled)
        session.commit()
    harvested = harvested_crops(engine, media)
    assert len(harvested) == sum(len(v) for v in crops.values()) - 1
    assert rejected_id not in {c.sample_id for c in harvested}
    assert next(c.code for c in harvested if c.sample_id == labelled_id) == known_code

    # The same picture again in a later transaction is a duplicate, not a new example.
    again = [*harvested, replace(harvested[0], sample_id=999, transaction_id="tx-again")]
    dataset = build_dataset(again, HarvestConfig(min_transactions=3, test_fraction=0.25))
    assert dataset.stats["duplicates_dropped"] == 1
    train_tx = {c.transaction for crops in dataset.train.values() for c in crops}
    test_tx = set(dataset.test_transactions())
    assert not train_tx & test_tx  # whole transactions on one side
    started = {
        t: min(c.captured_at for c in harvested if c.transaction == t) for t in train_tx | test_tx
    }
    assert len(test_tx) == 2 and min(started[t] for t in test_tx) > max(
        started[t] for t in train_tx
    )
    assert dataset.codes == sorted(crops) and all(dataset.train.values())

    # A product that only arrived lately still gets taught: its oldest held-out transactions
    # move back to training until it has as many there as in the test.
    late = [
        replace(c, captured_at=c.captured_at + timedelta(days=1)) if c.code == new_code else c
        for c in harvested
    ]
    half = build_dataset(late, HarvestConfig(test_fraction=0.5))
    taught = {c.transaction for c in half.train[new_code]}
    held_out = {c.transaction for c in half.test[new_code]}
    assert len(taught) >= len(held_out) > 0 and not taught & held_out

    strict = build_dataset(harvested, HarvestConfig(min_transactions=KNOWN_TRANSACTIONS + 1))
    assert known_code not in strict.codes and new_code in strict.codes
    assert strict.stats["codes_with_too_few_transactions"] == {known_code: KNOWN_TRANSACTIONS}
    engine.dispose()


def test_gate_refuses_a_regression_or_an_unlearned_new_product() -> None:
    production = {"known_top1": 0.9, "replay_clean": 1.0, "harvest_per_code": {"N": 0.0}}
    good = {"known_top1": 0.895, "replay_clean": 1.0, "harvest_per_code": {"N": 0.9}}
    report = judge(production, good, ["N"], GatePolicy(tolerance=0.01))
    assert report["passed"] and not report["failed"]
    forgot = {**good, "known_top1": 0.85}
    report = judge(production, forgot, ["N"], GatePolicy(tolerance=0.01))
    assert not report["passed"]
    assert report["failed"] == ["known_top1 not worse than production by more than 0.01"]
    unlearned = {**good, "harvest_per_code": {"N": 0.5}}
    report = judge(production, unlearned, ["N"], GatePolicy(new_product_min_top1=0.8))
    assert report["failed"] == ["new product N identified at least 0.8"]
    assert not judge({}, {}, [], GatePolicy())["passed"]  # nothing measured is not a pass


def test_train_run_fine_tunes_from_production_and_publishes_what_passes(
    store: Store,
    quick_bundle: tuple[Path, Manifest, list[str]],
    tmp_path: Path,
) -> None:
    settings, crops = store.settings, store.crops
    new_code = next(iter(crops))
    parent = read_manifest(quick_bundle[0])
    engine = make_engine(settings.database_url)
    deadline = time.monotonic() + 60
    while not fast_path_learned(engine, new_code) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert fast_path_learned(engine, new_code)
    # Tolerances wide open: a one-epoch model is not expected to be good, only to flow through.
    result = CliRunner().invoke(
        laneguard_cli,
        [
            "train",
            "run",
            "--db",
            settings.database_url,
            "--quick",
            "--work",
            str(tmp_path / "work"),
            "--tolerance",
            "1",
            "--new-product-min",
            "0",
        ],
        env={
            "LANEGUARD_DATA_DIR": str(settings.data_dir),
            "LANEGUARD_BUNDLE": str(quick_bundle[0]),
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("{"), result.stdout[:300]
    report = json.loads(result.stdout)
    gate = report["gate"]
    assert gate["passed"] and gate["new_codes"] == [new_code]
    metrics = {check["check"].split(" ")[0] for check in gate["checks"]}
    assert {"harvest_top1", "replay_clean", "known_top1", "detector_mAP50"} <= metrics
    # The detector learned from the lane's camera frames and is judged on its newest ones.
    camera = report["harvest"]["camera_frames"]
    assert camera["train_frames"] > 0 and camera["test_frames"]["lane-1"] > 0
    lane_checks = [c for c in gate["checks"] if "lane-1's newest camera frames" in c["check"]]
    # mAP50, and the lane's own count at its new-track score (own boxes, precision)
    assert [c["check"].split(" ")[0] for c in lane_checks][:2] == [
        "detector_mAP50",
        "own_box_recall",
    ]
    assert all(0.0 <= c["candidate"] <= 1.0 for c in lane_checks)
    assert set(gate["candidate"]["store_frames_mAP50"]) == {"lane-1"}
    lane_count = gate["candidate"]["store_frames_boxes"]["lane-1"]
    assert lane_count["images"] == camera["test_frames"]["lane-1"] and lane_count["products"] > 0
    assert gate["production"]["detector_boxes"]["products"] > 0
    assert gate["production"]["replay_transactions"] >= 2
    # Production is measured as its lanes identify: the bundle plus the fast path's entries
    # (which had learned the product), less those made from the crops the gate tests on.
    assert new_code in gate["production"]["harvest_per_code"]
    sha = parent.files[
        next(m.file for m in parent.models if m.role == "embedder" and m.precision == "fp32")
    ]
    learned = store_entries(engine, sha)
    learned_from = {sample_id(engine, entry_id) for entry_id in learned}
    assert new_code in {code for code, _ in learned.values()}
    assert not {code for code, _ in store_entries(engine, sha, learned_from).values()}

    candidate = Path(report["bundle"])
    manifest = extract_bundle(candidate, tmp_path / "extracted")
    assert manifest.parent_version == parent.version and manifest.release == parent.release + 1
    assert new_code in json.loads((tmp_path / "extracted" / "class_map.json").read_text())["codes"]
    assert set(manifest.training_data["weights"].values()) <= set(manifest.files)
    assert manifest.metrics["gate"]["passed"]
    models = load_models(candidate)  # a lane can run it
    assert models.gallery is not None and new_code in models.gallery.codes
    # The verifier is nothing a store teaches: production's file rides along unchanged.
    verifier = next(m for m in parent.models if m.role == "verifier")
    assert models.verifier is not None and models.verifier.file == verifier.file
    assert manifest.files[verifier.file] == parent.files[verifier.file]
    assert "verifier_not_product_classes" in manifest.training_data

    with Session(engine) as session:
        release = session.exec(select(BundleRelease)).one()
        assert release.version == manifest.version and release.published_by == "trainer"
        assert release.gate_report is not None and release.gate_report["passed"]
        actions = [a.action for a in session.exec(select(AuditEntry))]
        assert "training.gate_passed" in actions and "bundle.published" in actions

    # The console shows the pass and the published bundle, each with the gate's checks.
    create_user(engine, "manager", "manager-password", "manager")
    with httpx.Client(base_url=store.url, timeout=10) as console:
        sign_in(console, "manager", "manager-password")
        page = console.get("/rollouts").text
    passes = page[page.index('id="training-passes"') :]
    assert manifest.version in passes and "passed" in passes
    assert "known_top1 not worse than production" in passes
    assert page.count("replay_clean not worse than production") == 2  # pass and release
    engine.dispose()


def test_a_refused_candidate_is_audited_not_published_and_watch_trains_on_new_crops(
    store: Store, tmp_path: Path
) -> None:
    settings = store.settings
    engine = make_engine(settings.database_url)
    impossible = GatePolicy(tolerance=0.0, new_product_min_top1=1.01)
    trainer = StoreTrainer(
        engine, settings, TrainRunConfig.quick(policy=impossible, detector_epochs=0), tmp_path / "w"
    )
    stop, reports = threading.Event(), []

    def watch() -> None:
        reports.extend(trainer.watch(stop, every_s=0.2, min_new=5, progress=lambda _: None))

    thread = threading.Thread(target=watch)
    thread.start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and thread.is_alive() and not refused(engine):
        time.sleep(0.5)
    time.sleep(1.0)  # a few more checks: no new crops, so no second pass
    stop.set()
    thread.join(timeout=300)
    assert len(reports) == 1, "watch trains once on the crops waiting, then waits for new ones"
    gate = reports[0]["gate"]
    assert not gate["passed"]
    assert any(f.startswith("new product") for f in gate["failed"]), gate["failed"]
    assert "published" not in reports[0]
    with Session(engine) as session:
        assert session.exec(select(BundleRelease)).first() is None
        query = select(AuditEntry).where(AuditEntry.action == "training.gate_refused")
        audited = session.exec(query).one().detail["gate"]
        assert isinstance(audited, dict) and audited["failed"] == gate["failed"]
    assert trainer.new_crops() == 0  # the pass is remembered: nothing new to train on
    engine.dispose()


def refused(engine: Engine) -> bool:
    with Session(engine) as session:
        query = select(AuditEntry).where(AuditEntry.action == "training.gate_refused")
        return session.exec(query).first() is not None


def fast_path_learned(engine: Engine, code: str) -> bool:
    with Session(engine) as session:
        query = select(GalleryEntry).where(GalleryEntry.code == code)
        return session.exec(query).first() is not None


def sample_id(engine: Engine, entry_id: int) -> int:
    with Session(engine) as session:
        entry = session.get(GalleryEntry, entry_id)
        assert entry is not None and entry.sample_id is not None
        return entry.sample_id


def test_the_shipped_bundle_can_be_fine_tuned_from(tmp_path: Path) -> None:
    """The shipped bundle carries both networks' weights: the embedder's (what new products are
    learned in) and the detector's, whose fine-tune keeps the ImageNet backbone frozen and the
    randomised world in its images."""
    import torch

    from laneguard.bundle import SHIPPED_BUNDLE, extracted
    from trainer.finetune import inherited_detector_recipe
    from trainer.weights import load_embedder, parent_weights

    folder, manifest = extracted(SHIPPED_BUNDLE, tmp_path)
    weights = parent_weights(folder, manifest)
    assert weights.detector is not None
    checkpoint = torch.load(weights.detector, map_location="cpu", weights_only=False)
    assert checkpoint["model"].names == DETECT_NAMES
    inherited = inherited_detector_recipe(manifest)
    assert inherited.freeze_backbone
    assert inherited.randomized_share == manifest.training_data["recipe"]["randomized_share"] > 0
    model, meta = load_embedder(weights.embedder)
    exported = tmp_path / "re-exported.onnx"
    export_embedder_onnx(
        EmbedderRun(
            model,
            meta["classes"],
            meta["arch"],
            meta["input_size"],
            0,
            0,
            0.0,
            [],
            meta["serve_size"],
        ),
        exported,
    )
    shipped = next(m for m in manifest.models if m.role == "embedder" and m.precision == "fp32")
    world = World.from_catalog()
    probe = [world.sprite(product, 1, Random(7)).bgr for product in world.known[:4]]
    same = Embedder(exported).embed(probe) @ Embedder(folder / shipped.file).embed(probe).T
    # The shipped embedder's weights, as the bundle stores them: rounded to float16 (1 - cos
    # measured at most 9e-5 on these sprites; another network would be far from 1).
    assert np.allclose(np.diag(same), 1.0, atol=5e-4)
