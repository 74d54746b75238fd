"""The slow path at HQ: one fine-tune on the pooled crops of every store, judged store by store.

The pool is every store's crops that may teach (honest transactions, or labelled in review,
never rejected), each transaction keyed by its store, lane and id. The split holds out the
newest whole transactions of each store on its own, so every store has held-out transactions.
The chain-wide gate is the store trainer's (`trainer.gate`); on top, production and candidate
are measured on each store's held-out transactions alone, and a candidate worse for any one
store by more than the tolerance is refused, though the chain as a whole may gain. A passing
candidate is signed by HQ and released to every store (`hq_server.releases`); an IT admin (or
`--rollout`) starts the waves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from hq_server.models import ChainGalleryEntry, ChainRelease, ChainRollout, PooledSample
from hq_server.outbox import HqOutbox
from hq_server.releases import publish_release, release_path
from hq_server.settings import HqSettings
from laneguard.bundle import SHIPPED_BUNDLE, extracted
from laneguard.files import write_json_atomic
from laneguard.gallery import Gallery
from product_db.models import as_utc
from store_server.auth import audit
from store_server.learning import decode_vector
from store_server.media import MediaStore
from trainer.finetune import TrainRunConfig, TrainRunResult, run_training
from trainer.gate import GateSide, judge, measure
from trainer.harvest import HarvestDataset, HarvestedCrop, build_dataset, may_teach

log = logging.getLogger("laneguard.trainer.chain")
STATE_FILE = "chain-training-state.json"


def store_of(crop: HarvestedCrop) -> str:
    return crop.lane_id.split("/", 1)[0]


def pooled_crops(engine: Engine, media: MediaStore) -> list[HarvestedCrop]:
    """Every pooled crop that may teach, oldest first; a crop's lane is "<store>/<lane>", so
    transactions of different stores never merge."""
    with Session(engine) as session:
        rows = list(
            session.exec(
                select(PooledSample)
                .where(may_teach(PooledSample))
                .order_by(col(PooledSample.captured_at), col(PooledSample.id))
            )
        )
    crops = []
    for row in rows:
        path = media.path(row.image)
        code = row.label or row.code
        if code and row.id is not None and path.is_file():
            crops.append(
                HarvestedCrop(
                    row.id,
                    code,
                    path,
                    f"{row.store_id}/{row.lane_id}",
                    row.transaction_id,
                    as_utc(row.captured_at),
                )
            )
    return crops


def chain_entries(
    engine: Engine, embedder_sha256: str, held_out: set[tuple[str, str]]
) -> dict[int, tuple[str, np.ndarray]]:
    """The chain's gallery entries for that embedder, sent to the stores (not held) and not
    withdrawn, less those learned from a held-out transaction (production would be flattered
    by the very crops it is tested on)."""
    entries: dict[int, tuple[str, np.ndarray]] = {}
    with Session(engine) as session:
        for row in session.exec(
            select(ChainGalleryEntry).where(ChainGalleryEntry.embedder_sha256 == embedder_sha256)
        ):
            if row.id is None or row.withdrawn or row.withdraws is not None:
                continue
            if row.released_at is None:  # held: the stores' lanes do not have it either
                continue
            if (f"{row.store_id}/{row.lane_id}", row.transaction_id) not in held_out:
                entries[row.id] = (row.code, decode_vector(row.vector_b64))
    return entries


def for_store(dataset: HarvestDataset, store_id: str) -> HarvestDataset:
    test = {
        code: [c for c in crops if store_of(c) == store_id] for code, crops in dataset.test.items()
    }
    return HarvestDataset(dataset.train, {c: v for c, v in test.items() if v}, {})


def per_store_gate(
    dataset: HarvestDataset,
    production: GateSide,
    candidate: GateSide,
    new_codes: list[str],
    config: TrainRunConfig,
) -> dict[str, Any]:
    """Each store's held-out transactions judged alone (identity and the honest replay; the
    detector and known products are chain-wide and judged once)."""
    stores = sorted({store_of(c) for crops in dataset.test.values() for c in crops})
    verdicts = {}
    for store_id in stores:
        own = for_store(dataset, store_id)
        sides = []
        for side in (production, candidate):
            measured = measure(side, own, {})
            measured["known_top1"] = measured["detector_mAP50"] = measured["detector_boxes"] = None
            sides.append(measured)
        verdict = judge(sides[0], sides[1], new_codes, config.policy)
        verdicts[store_id] = {
            "passed": verdict["passed"],
            "failed": verdict["failed"],
            "checks": verdict["checks"],
            "replay_transactions": sides[0]["replay_transactions"],
        }
    return verdicts


def production_bundle(engine: Engine, settings: HqSettings) -> Path:
    """What the chain runs: the newest release every wave completed, else the shipped one."""
    with Session(engine) as session:
        done = session.exec(
            select(ChainRollout)
            .where(ChainRollout.state == "completed")
            .order_by(col(ChainRollout.id).desc())
        ).first()
        release = session.get(ChainRelease, done.release_id) if done else None
    if release is not None:
        return release_path(settings.data_dir, release.sha256)
    return SHIPPED_BUNDLE


@dataclass
class ChainTrainer:
    engine: Engine
    settings: HqSettings
    config: TrainRunConfig
    work: Path
    publish: bool = True

    def run_once(self, progress: Callable[[str], None] = log.info) -> TrainRunResult:
        """One pass: pool, fine-tune, gate chain-wide and per store, release what passes."""
        from hq_server.app import hq_signing_key

        media = MediaStore(self.settings.data_dir / "media")
        crops = pooled_crops(self.engine, media)
        dataset = build_dataset(crops, self.config.harvest, split_by=store_of)
        dataset.stats["stores"] = len({store_of(c) for c in crops})
        dataset.stats["max_pooled_id"] = max((c.sample_id for c in crops), default=0)
        held_out = set(dataset.test_transactions())
        parent = production_bundle(self.engine, self.settings)
        out = self.work / "candidate.tar.gz"
        result = run_training(
            dataset,
            parent,
            self.work / "run",
            out,
            self.config,
            progress,
            learned=lambda sha, _ids: chain_entries(self.engine, sha, held_out),
        )
        progress("per-store gate")
        report = result.report
        report["per_store"] = self._per_store(
            dataset, parent, out, held_out, report["gate"]["new_codes"]
        )
        # A store whose crops all went to training (too few transactions of its own, or
        # pictures like other stores') cannot be judged alone; the report says which.
        report["stores_not_judged"] = sorted(
            {store_of(c) for c in crops} - set(report["per_store"])
        )
        refused = sorted(s for s, v in report["per_store"].items() if not v["passed"])
        passed = bool(report["gate"]["passed"]) and not refused
        report["passed"] = passed
        if refused:
            report["gate"]["failed"].append(f"worse for store(s) {', '.join(refused)}")
            report["gate"]["passed"] = False
        key = hq_signing_key(self.settings)
        with Session(self.engine) as session:
            action = "training.gate_passed" if passed else "training.gate_refused"
            audit(session, "trainer", action, report["candidate"], per_store=report["per_store"])
            if passed and self.publish:
                release = publish_release(
                    session,
                    HqOutbox(self.engine, key),
                    self.settings.data_dir,
                    out,
                    key,
                    "trainer",
                    f"fine-tuned on {dataset.stats['train_crops']} crops of "
                    f"{dataset.stats['codes']} products from {dataset.stats['stores']} stores",
                    {"passed": True, "per_store": report["per_store"], **report["gate"]},
                )
                report["published"] = {"release_id": release.id, "sha256": release.sha256}
            session.commit()
        write_json_atomic(
            self.settings.data_dir / STATE_FILE, {"max_pooled_id": dataset.stats["max_pooled_id"]}
        )
        return result

    def _per_store(
        self,
        dataset: HarvestDataset,
        parent: Path,
        candidate: Path,
        held_out: set[Any],
        new_codes: list[str],
    ) -> dict[str, Any]:
        parent_folder, parent_manifest = extracted(parent)
        candidate_folder, candidate_manifest = extracted(candidate)

        def side(name: str, folder: Path, manifest: Any, extra: bool) -> GateSide:
            fp32 = next(
                m for m in manifest.models if m.role == "embedder" and m.precision == "fp32"
            )
            gallery = Gallery.load(folder / manifest.gallery)
            if extra:
                from checkout_node.gallery_follower import with_entries

                gallery = with_entries(
                    gallery, chain_entries(self.engine, manifest.files[fp32.file], held_out)
                )
            return GateSide(name, folder / fp32.file, gallery, manifest.thresholds)

        return per_store_gate(
            dataset,
            side("production", parent_folder, parent_manifest, True),
            side("candidate", candidate_folder, candidate_manifest, False),
            new_codes,
            self.config,
        )

    def new_crops(self) -> int:
        """Pooled crops received since the last pass."""
        import json

        state = self.settings.data_dir / STATE_FILE
        last = int(json.loads(state.read_text()).get("max_pooled_id", 0)) if state.exists() else 0
        with Session(self.engine) as session:
            return int(
                session.exec(
                    select(func.count())
                    .select_from(PooledSample)
                    .where(col(PooledSample.id) > last)
                ).one()
            )

    def mark_all_seen(self) -> None:
        with Session(self.engine) as session:
            newest = int(session.exec(select(func.max(PooledSample.id))).one() or 0)
        write_json_atomic(self.settings.data_dir / STATE_FILE, {"max_pooled_id": newest})

    def watch(
        self, stop: Any, every_s: float, min_new: int, progress: Callable[[str], None]
    ) -> list[dict[str, Any]]:
        from trainer.store_training import watch_passes

        return watch_passes(self, stop, every_s, min_new, progress)
