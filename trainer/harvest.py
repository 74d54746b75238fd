"""The slow path's dataset: the item crops lanes harvested from honest transactions.

What a crop may teach is decided the way the fast path decides it: only crops of honest
transactions (every item matched a scan with agreeing identity) or crops a manager labelled in
review, never one a manager rejected, labelled with the scanned (or reviewed) code. Then:
- near-duplicates go (a lane sends several crops of one item; a shopper buys six of a yoghurt):
  a 64-bit difference hash, crops of one code within a few bits of each other are one;
- the split is by transaction and time: the newest transactions are the held-out set, so no
  item is in both, and the test looks like the future rather than the past;
- each code is capped, spread over its transactions, so a best-seller does not drown the rest.
"""

from __future__ import annotations

import shutil
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sqlalchemy import and_, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from product_db.models import as_utc
from store_server.learning import vouched_for
from store_server.media import MediaStore
from store_server.models import REVIEWED_LABELS, SampleRecord


@dataclass(frozen=True, slots=True)
class HarvestedCrop:
    sample_id: int
    code: str
    image: Path
    lane_id: str
    transaction_id: str
    captured_at: datetime

    @property
    def transaction(self) -> tuple[str, str]:
        return (self.lane_id, self.transaction_id)


@dataclass(frozen=True)
class HarvestConfig:
    min_transactions: int = 3  # a code needs crops from this many transactions to be taught
    test_fraction: float = 0.25  # newest share of the transactions held out (see split)
    max_per_code: int = 60  # training crops per code, spread over its transactions
    duplicate_bits: int = 4  # difference hashes this close are the same picture


@dataclass
class HarvestDataset:
    train: dict[str, list[HarvestedCrop]]
    test: dict[str, list[HarvestedCrop]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return sorted(set(self.train) | set(self.test))

    def test_transactions(self) -> dict[tuple[str, str], list[HarvestedCrop]]:
        """The held-out honest transactions, each with its crops: what the gate replays."""
        grouped: dict[tuple[str, str], list[HarvestedCrop]] = defaultdict(list)
        for crops in self.test.values():
            for crop in crops:
                grouped[crop.transaction].append(crop)
        return dict(grouped)

    def write(self, folder: Path) -> Path:
        """``folder/train/<code>/`` and ``folder/test/<code>/`` image folders (copies)."""
        if folder.exists():
            shutil.rmtree(folder)
        for split, crops_by_code in (("train", self.train), ("test", self.test)):
            for code, crops in crops_by_code.items():
                target = folder / split / code
                target.mkdir(parents=True, exist_ok=True)
                for crop in crops:
                    shutil.copyfile(crop.image, target / f"{crop.sample_id:08d}.jpg")
        return folder


def difference_hash(image: np.ndarray) -> int:
    """64-bit dHash: brightness steps between neighbours of a 9x8 thumbnail."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def may_teach(table: Any) -> Any:
    """The crops of ``table`` (a store's samples, or HQ's pooled ones: the same columns) that
    may teach: honest and labelled, or labelled in review, and never rejected."""
    return and_(
        col(table.review) != "rejected",
        or_(
            (col(table.reason) == "honest") & col(table.code).is_not(None),
            col(table.review).in_(REVIEWED_LABELS) & col(table.label).is_not(None),
        ),
    )


def harvested_crops(engine: Engine, media: MediaStore) -> list[HarvestedCrop]:
    """Every crop the store may learn from, oldest first: labelled by a person, or honest
    and vouched for by the store's own record of the transaction (store_server.learning's
    ``vouched_for``); unreadable files are left out."""
    with Session(engine) as session:
        rows = list(
            session.exec(
                select(SampleRecord)
                .where(may_teach(SampleRecord))
                .order_by(col(SampleRecord.captured_at), col(SampleRecord.id))
            )
        )
        rows = vouched_for(session, rows)
    crops = []
    for row in rows:
        path = media.path(row.image)
        code = row.label or row.code
        if code and row.id is not None and path.is_file():
            crops.append(
                HarvestedCrop(
                    row.id, code, path, row.lane_id, row.transaction_id, as_utc(row.captured_at)
                )
            )
    return crops


def deduplicate(crops: list[HarvestedCrop], bits: int) -> tuple[list[HarvestedCrop], int]:
    """Crops with a near-identical picture of the same code dropped; returns (kept, dropped)."""
    kept: list[HarvestedCrop] = []
    hashes: dict[str, list[int]] = defaultdict(list)
    for crop in crops:
        image = cv2.imread(str(crop.image), cv2.IMREAD_COLOR)
        if image is None:
            continue
        value = difference_hash(image)
        if any((value ^ other).bit_count() <= bits for other in hashes[crop.code]):
            continue
        hashes[crop.code].append(value)
        kept.append(crop)
    return kept, len(crops) - len(kept)


def spread(crops: list[HarvestedCrop], limit: int) -> list[HarvestedCrop]:
    """At most ``limit`` crops, taking one per transaction in turn."""
    queues: dict[tuple[str, str], list[HarvestedCrop]] = defaultdict(list)
    for crop in crops:
        queues[crop.transaction].append(crop)
    chosen: list[HarvestedCrop] = []
    while len(chosen) < limit and any(queues.values()):
        for queue in queues.values():
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


def split_transactions(
    crops: list[HarvestedCrop], test_fraction: float
) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(train, test) transactions: the newest ``test_fraction`` held out whole, except that a
    code keeps at least as many transactions for training as for testing (its oldest held-out
    ones move back, whole), so a product that only appeared lately is still taught."""
    first_seen: dict[tuple[str, str], datetime] = {}
    codes_of: dict[tuple[str, str], set[str]] = defaultdict(set)
    for crop in crops:
        first_seen.setdefault(crop.transaction, crop.captured_at)
        codes_of[crop.transaction].add(crop.code)
    ordered = sorted(first_seen, key=lambda t: (first_seen[t], t))
    n_test = round(len(ordered) * test_fraction)
    train, test = set(ordered[: len(ordered) - n_test]), ordered[len(ordered) - n_test :]
    in_train = Counter(code for t in train for code in codes_of[t])
    in_test = Counter(code for t in test for code in codes_of[t])
    for transaction in list(test):
        if any(in_train[code] < in_test[code] for code in codes_of[transaction]):
            train.add(transaction)
            test.remove(transaction)
            in_train.update(codes_of[transaction])
            in_test.subtract(codes_of[transaction])
    return train, set(test)


def build_dataset(
    crops: list[HarvestedCrop],
    config: HarvestConfig,
    split_by: Callable[[HarvestedCrop], str] | None = None,
) -> HarvestDataset:
    """Deduplicated, split by transaction and time, balanced. With ``split_by`` (HQ: the
    store a crop came from) each group's newest transactions are held out on their own, so
    every store has held-out transactions for the gate to judge it by."""
    unique, duplicates = deduplicate(crops, config.duplicate_bits)
    transactions_of: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for crop in unique:
        transactions_of[crop.code].add(crop.transaction)
    too_few = {
        code: len(ts) for code, ts in transactions_of.items() if len(ts) < config.min_transactions
    }
    taught = [c for c in unique if c.code not in too_few]
    groups: dict[str, list[HarvestedCrop]] = defaultdict(list)
    for crop in taught:
        groups[split_by(crop) if split_by else ""].append(crop)
    train_transactions: set[tuple[str, str]] = set()
    for group in groups.values():
        train_transactions |= split_transactions(group, config.test_fraction)[0]
    train: dict[str, list[HarvestedCrop]] = defaultdict(list)
    test: dict[str, list[HarvestedCrop]] = defaultdict(list)
    for crop in taught:
        (train if crop.transaction in train_transactions else test)[crop.code].append(crop)
    balanced = {code: spread(group, config.max_per_code) for code, group in sorted(train.items())}
    stats = {
        "crops_harvested": len(crops),
        "duplicates_dropped": duplicates,
        "codes": len(balanced),
        "train_crops": sum(len(v) for v in balanced.values()),
        "test_crops": sum(len(v) for v in test.values()),
        "train_transactions": len(train_transactions),
        "test_transactions": len({c.transaction for v in test.values() for c in v}),
        "codes_with_too_few_transactions": too_few,
    }
    return HarvestDataset(balanced, dict(sorted(test.items())), stats)
