"""HQ's slow path: pooled crops keep each store's transactions apart, every store gets its
own held-out transactions, and a candidate that forgets one store's products is refused for
that store even when the others are as good as before (the shipped bundle's real embedder)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

from checkout_node.model_bundle import load_models
from laneguard.gallery import Gallery
from product_db.models import utcnow
from simulator.world import World
from tests.harness.test_gallery_learning import crop_of
from trainer.chain_training import for_store, per_store_gate, store_of
from trainer.finetune import TrainRunConfig
from trainer.gate import GatePolicy, GateSide
from trainer.harvest import HarvestConfig, HarvestedCrop, build_dataset


def _pool(tmp_path: Path, world: World, plan: dict[str, list[str]]) -> list[HarvestedCrop]:
    """Crops as HQ pools them: lane "<store>/<lane>", 6 transactions a product per store."""
    crops, n = [], 0
    start = utcnow() - timedelta(hours=1)
    for store_id, codes in plan.items():
        for t in range(6):  # the store's products bought turn about
            for code in codes:
                n += 1
                path = tmp_path / f"{n}.jpg"
                path.write_bytes(crop_of(world, code, 1000 * n))
                crops.append(
                    HarvestedCrop(
                        n,
                        code,
                        path,
                        f"{store_id}/lane-1",
                        f"tx-{code}-{t}",
                        start + timedelta(minutes=n),
                    )
                )
    return crops


def test_every_store_is_held_out_on_its_own_and_judged_on_its_own(tmp_path: Path) -> None:
    world = World.from_catalog()
    known = [p.code for p in world.known[:4]]
    plan = {"A": known[:2], "B": known[2:]}  # each store sells its own two products
    crops = _pool(tmp_path, world, plan)
    dataset = build_dataset(crops, HarvestConfig(duplicate_bits=-1), split_by=store_of)
    held_out = dataset.test_transactions()
    assert {store_of(c) for cs in held_out.values() for c in cs} == {"A", "B"}
    for store_id in "AB":  # each store's newest transactions, not the chain's newest
        own = [c for c in crops if store_of(c) == store_id]
        newest = max(own, key=lambda c: c.captured_at)
        assert newest.transaction in held_out
        assert set(for_store(dataset, store_id).test) == set(plan[store_id])

    models = load_models()
    embedder = models.path(models.embedder)
    production = GateSide("production", embedder, models.gallery, models.manifest.thresholds)
    # The candidate has forgotten store B's products: the same embedder, their references gone.
    forgotten = set(plan["B"])
    keep = np.array([models.gallery.codes[i] not in forgotten for i in models.gallery.labels])
    codes = [c for c in models.gallery.codes if c not in forgotten]
    remaining = Gallery(
        codes,
        models.gallery.vectors[keep],
        np.array([codes.index(models.gallery.codes[i]) for i in models.gallery.labels[keep]]),
        models.gallery.embedder_sha256,
    )
    candidate = GateSide("candidate", embedder, remaining, models.manifest.thresholds)
    verdicts = per_store_gate(
        dataset, production, candidate, [], TrainRunConfig(policy=GatePolicy(0.01, 0.8))
    )
    assert verdicts["A"]["passed"], verdicts["A"]["failed"]
    assert not verdicts["B"]["passed"]
    assert any("harvest_top1" in f for f in verdicts["B"]["failed"])
    assert verdicts["A"]["replay_transactions"] >= 1 and verdicts["B"]["replay_transactions"] >= 1
