"""The slow path run against a store: its harvest, its production bundle, its publishing.

`laneguard train run` does one pass; `laneguard train watch` is the service that runs a pass
whenever enough new crops were harvested since the last one. Every pass leaves an audit entry
with the gate's report (shown on the console's audit page); a candidate that passes is
published with the report (the console's Rollouts page), ready to roll out. Nothing is rolled
out by the trainer: an IT admin starts the staged rollout.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from laneguard.files import write_json_atomic
from product_db.models import Product
from store_server.auth import audit
from store_server.media import MediaStore
from store_server.models import SampleRecord
from store_server.rollouts import bundle_path, production, publish_bundle
from store_server.settings import StoreSettings
from trainer.finetune import TrainRunConfig, TrainRunResult, run_training, store_entries
from trainer.harvest import build_dataset, harvested_crops
from trainer.store_frames import harvested_frames, split_frames

log = logging.getLogger("laneguard.trainer")
STATE_FILE = "training-state.json"


def production_bundle(engine: Engine, settings: StoreSettings) -> Path:
    """What the lanes run outside a rollout: the last completed rollout's bundle, else the
    store's configured one, else the shipped one."""
    with Session(engine) as session:
        release = production(session)
        if release is not None:
            return bundle_path(settings.data_dir, release)
    if settings.bundle is not None:
        return settings.bundle
    from laneguard.bundle import SHIPPED_BUNDLE

    return SHIPPED_BUNDLE


def _names(engine: Engine, codes: list[str]) -> dict[str, str]:
    with Session(engine) as session:
        rows = session.exec(select(Product).where(Product.code.in_(codes)))  # type: ignore[attr-defined]
        return {row.code: row.name for row in rows}


@dataclass
class StoreTrainer:
    engine: Engine
    settings: StoreSettings
    config: TrainRunConfig
    work: Path
    signing_key: Path | None = None
    publish: bool = True

    @property
    def state_path(self) -> Path:
        return self.settings.data_dir / STATE_FILE

    def run_once(self, progress: Callable[[str], None] = log.info) -> TrainRunResult:
        """One pass: harvest, fine-tune, gate, write, audit, publish when the gate passed."""
        media = MediaStore(self.settings.data_dir / "media")
        crops = harvested_crops(self.engine, media)
        dataset = build_dataset(crops, self.config.harvest)
        dataset.stats["max_sample_id"] = max((c.sample_id for c in crops), default=0)
        frames = split_frames(
            harvested_frames(self.engine, media), self.config.harvest.test_fraction
        )
        dataset.stats["camera_frames"] = frames.stats
        parent = production_bundle(self.engine, self.settings)
        out = self.work / "candidate.tar.gz"
        result = run_training(
            dataset,
            parent,
            self.work / "run",
            out,
            self.config,
            progress,
            names=_names(self.engine, dataset.codes),
            learned=lambda sha, held_out: store_entries(self.engine, sha, held_out),
            frames=frames,
        )
        if self.signing_key is not None:
            from laneguard.signing import load_private_key, sign_bundle

            sign_bundle(out, load_private_key(self.signing_key))
        with Session(self.engine) as session:
            gate = result.report["gate"]
            action = "training.gate_passed" if gate["passed"] else "training.gate_refused"
            audit(session, "trainer", action, result.report["candidate"], **result.report)
            if gate["passed"] and self.publish:
                release = publish_bundle(
                    session,
                    self.settings.data_dir,
                    out,
                    "trainer",
                    f"fine-tuned from {result.report['parent']['version']} on "
                    f"{dataset.stats['train_crops']} harvested crops "
                    f"of {dataset.stats['codes']} products",
                    self.settings.bundle_keys,
                    gate,
                )
                result.report["published"] = {"release_id": release.id, "sha256": release.sha256}
            session.commit()
        write_json_atomic(self.state_path, {"max_sample_id": dataset.stats["max_sample_id"]})
        return result

    def new_crops(self) -> int:
        """Honest crops received since the last pass."""
        last = 0
        if self.state_path.exists():
            last = int(json.loads(self.state_path.read_text("utf-8")).get("max_sample_id", 0))
        with Session(self.engine) as session:
            count = session.exec(
                select(func.count()).select_from(SampleRecord).where(SampleRecord.id > last)  # type: ignore[operator]
            ).one()
        return int(count)

    def watch(
        self, stop: threading.Event, every_s: float, min_new: int, progress: Callable[[str], None]
    ) -> list[dict[str, Any]]:
        """Run a pass whenever ``min_new`` crops arrived since the last, checking every
        ``every_s`` seconds, until ``stop`` is set; returns the reports of the passes."""
        return watch_passes(self, stop, every_s, min_new, progress)

    def mark_all_seen(self) -> None:
        """Nothing trainable came of the crops so far: wait for ``min_new`` more."""
        write_json_atomic(self.state_path, {"max_sample_id": self._max_sample_id()})

    def _max_sample_id(self) -> int:
        with Session(self.engine) as session:
            return int(session.exec(select(func.max(SampleRecord.id))).one() or 0)


class Trainable(Protocol):
    def new_crops(self) -> int: ...
    def run_once(self, progress: Callable[[str], None]) -> TrainRunResult: ...
    def mark_all_seen(self) -> None: ...


def watch_passes(
    trainer: Trainable,
    stop: threading.Event,
    every_s: float,
    min_new: int,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """The training service's loop, a store's or HQ's: a pass whenever ``min_new`` crops
    arrived since the last."""
    from trainer.finetune import TrainingError

    reports = []
    while not stop.is_set():
        waiting = trainer.new_crops()
        if waiting >= min_new:
            progress(f"{waiting} new crops: training")
            try:
                reports.append(trainer.run_once(progress).report)
            except TrainingError as exc:
                progress(f"not trained: {exc}")
                trainer.mark_all_seen()
        stop.wait(every_s)
    return reports
