"""The fast path of learning: honest transactions' crops become gallery entries, no retraining.

A lane sends the crops of every item in an honest transaction (every item matched a scan with
agreeing identity), labelled with the scanned code. When the lanes did not already recognise
such an item (it was "unknown", "of interest", or named as another product), its crop is
evidence of a new product or a new packaging. The learner embeds those crops with the bundle's
embedder and adds them to the store's gallery once a code has them from enough different
honest transactions (default 3), so no single transaction, cashier or customer can teach the
lanes something.

Guards against poisoning: only crops of honest transactions the store holds, whose scans
include the crop's code (``vouched_for``: not what the sample says of itself); a crop a
manager rejected never joins; the crops of a code must agree with one another (each within
``consistency`` cosine similarity of their medoid, by default measured on the bundle's
gallery) and only the agreeing ones join; a crop more like another product of the bundle's
gallery than like its own code's medoid (a known product's crop under a new code) never joins;
and the console's samples page shows a random audit sample of what joined, where a manager can
withdraw an entry.

Lanes fetch the entries after the last one they have, signed by the store's key
(``GET /api/v1/gallery/updates``), and use them from their next transaction.
"""

from __future__ import annotations

import base64
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import and_, func, not_, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.bundle import extracted
from laneguard.embedding import Embedder
from laneguard.gallery import Gallery, GalleryError
from laneguard.signing import key_id, load_or_make_key, sign_json
from product_db.errors import LaneGuardError
from store_server.background import PokedLoop
from store_server.media import EvidenceImageError, MediaStore
from store_server.models import REVIEWED_LABELS, GalleryEntry, SampleRecord, TransactionRecord
from store_server.settings import StoreSettings

log = logging.getLogger("laneguard.server.learning")


class UnknownGalleryEntryError(LaneGuardError, ValueError):
    """No gallery entry of that id to withdraw (none at all, or one that is a withdrawal)."""


@dataclass(frozen=True)
class LearnConfig:
    min_transactions: int = 3  # distinct honest transactions before a code's crops join
    # Each joining crop's least cosine similarity to its code's medoid. None: the bundle's own
    # figure (``consistency_threshold``), since what "alike" measures depends on the embedder:
    # 0.85 suited the lanenet embedder (different products up to 0.81); with the pretrained
    # Lite0 one, crops of one product never trained on measure 0.68 to their medoid (median).
    consistency: float | None = None
    max_entries_per_code: int = 16
    # The share of other products' reference vectors allowed above the derived threshold.
    cross_product_share: float = 0.001


def encode_vector(vector: np.ndarray) -> str:
    return base64.b64encode(vector.astype("<f4").tobytes()).decode()


def decode_vector(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<f4")


@dataclass
class ModelForLearning:
    """The bundle's float embedder, and the id (sha256) lanes know it by."""

    embedder: Embedder
    embedder_sha256: str
    version: str
    gallery: Gallery

    @classmethod
    def from_bundle(cls, bundle: Path) -> ModelForLearning:
        """From the same verified extraction the lanes use."""
        folder, manifest = extracted(bundle)
        fp32 = next(m for m in manifest.models if m.role == "embedder" and m.precision == "fp32")
        return cls(
            Embedder(folder / fp32.file),
            manifest.files[fp32.file],
            manifest.version,
            Gallery.load(folder / manifest.gallery),
        )


def medoid(vectors: np.ndarray) -> np.ndarray:
    """The vector most like all the others. Not the mean: a mislabelled crop pulls a mean
    towards itself, but cannot become the medoid while most crops agree."""
    return vectors[int(np.argmax((vectors @ vectors.T).sum(axis=1)))]


def consistency_threshold(gallery: Gallery, cross_product_share: float = 0.001) -> float:
    """The similarity to a code's medoid that only ``cross_product_share`` of the other
    products' reference vectors reach, measured on the bundle's own gallery: a crop that close
    is as alike as crops of different products almost never are, with this embedder."""
    labels = np.array(gallery.labels)
    vectors = gallery.vectors
    others = []
    for code in np.unique(labels):
        others.append(vectors[labels != code] @ medoid(vectors[labels == code]))
    if not others:
        raise GalleryError("the bundle's gallery has no products to measure consistency on")
    return float(np.quantile(np.concatenate(others), 1.0 - cross_product_share))


def joining_crops(
    vectors: np.ndarray, code: str, gallery: Gallery, consistency: float
) -> list[int]:
    """Which of a code's crops may join, the most typical first: those at least
    ``consistency`` similar to the crops' medoid and more like it than like any other product
    of the bundle's gallery. The threshold is measured between products the embedder was
    trained on, which it keeps far apart; a product it never saw can lie closer to a known one
    than that, so a known product's crop labelled with the new code could pass it alone."""
    own = vectors @ medoid(vectors)
    others = gallery.class_scores(vectors)
    if code in gallery.codes:
        others[:, gallery.codes.index(code)] = -1.0
    best_other = others.max(axis=1) if others.shape[1] else np.full(len(vectors), -1.0)
    return [
        int(i)
        for i in np.argsort(-own, kind="stable")
        if own[i] >= consistency and own[i] > best_other[i]
    ]


@dataclass
class GalleryLearner:
    engine: Engine
    media: MediaStore
    bundle: Path  # the bundle the lanes run: its embedder makes the vectors
    config: LearnConfig = field(default_factory=LearnConfig)
    _model: ModelForLearning | None = field(default=None, repr=False)
    _vectors: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _consistency: float | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def learn(self) -> list[GalleryEntry]:
        """One pass over the honest samples not yet in the gallery; returns what joined."""
        with self._lock:
            return self._learn()

    @property
    def model(self) -> ModelForLearning:
        """Loaded on first use: a store with no samples yet never pays for it."""
        if self._model is None:
            self._model = ModelForLearning.from_bundle(self.bundle)
            log.info("gallery: crops join at similarity %.3f to their medoid", self.consistency)
        return self._model

    @property
    def consistency(self) -> float:
        if self.config.consistency is not None:
            return self.config.consistency
        if self._consistency is None:
            self._consistency = consistency_threshold(
                self.model.gallery, self.config.cross_product_share
            )
        return self._consistency

    def _learn(self) -> list[GalleryEntry]:
        # Only what could still join, filtered in the database: honest, labelled, not rejected,
        # not already an entry, and not an item the lane already recognised as its code.
        already_joined = select(GalleryEntry.sample_id).where(
            col(GalleryEntry.sample_id).is_not(None)
        )
        recognised = and_(
            col(SampleRecord.band) == "trusted",
            func.coalesce(col(SampleRecord.vision_code), "") == col(SampleRecord.code),
        )
        with Session(self.engine) as session:
            counts: dict[str, int] = defaultdict(int)
            for code in session.exec(
                select(GalleryEntry.code).where(GalleryEntry.withdrawn == False)  # noqa: E712
            ):
                counts[code] += 1
            samples = list(
                session.exec(
                    select(SampleRecord).where(
                        or_(
                            and_(
                                col(SampleRecord.reason) == "honest",
                                col(SampleRecord.code).is_not(None),
                            ),
                            and_(  # an "of interest" crop a manager or the teacher labelled
                                col(SampleRecord.review).in_(REVIEWED_LABELS),
                                col(SampleRecord.label).is_not(None),
                            ),
                        ),
                        SampleRecord.review != "rejected",
                        col(SampleRecord.id).not_in(already_joined),
                        not_(recognised),
                    )
                )
            )
            samples = vouched_for(session, samples)
        by_code: dict[str, list[SampleRecord]] = defaultdict(list)
        for sample in samples:
            label = sample.label or sample.code
            assert label is not None
            by_code[label].append(sample)
        added: list[GalleryEntry] = []
        for code, group in by_code.items():
            if len({(s.lane_id, s.transaction_id) for s in group}) < self.config.min_transactions:
                continue
            room = self.config.max_entries_per_code - counts[code]
            added += self._join(code, group, room)
        for entry in added:  # a joined sample is never read again
            self._vectors.pop(entry.sample_id or 0, None)
        if added:
            with Session(self.engine) as session:
                session.add_all(added)
                session.commit()
                for entry in added:
                    session.refresh(entry)
            log.info(
                "gallery: %d entries joined for %s", len(added), sorted({e.code for e in added})
            )
        return added

    def _join(self, code: str, group: list[SampleRecord], room: int) -> list[GalleryEntry]:
        vectors = np.stack([self._vector(s) for s in group])
        order = joining_crops(vectors, code, self.model.gallery, self.consistency)
        transactions = {(group[i].lane_id, group[i].transaction_id) for i in order}
        if len(transactions) < self.config.min_transactions or room <= 0:
            return []
        return [
            GalleryEntry(
                code=code,
                vector_b64=encode_vector(vectors[i]),
                embedder_sha256=self.model.embedder_sha256,
                sample_id=group[i].id or 0,
                transaction_id=group[i].transaction_id,
                lane_id=group[i].lane_id,
            )
            for i in order[:room]
        ]

    def _vector(self, sample: SampleRecord) -> np.ndarray:
        assert sample.id is not None
        cached = self._vectors.get(sample.id)
        if cached is None:
            image = cv2.imread(str(self.media.path(sample.image)), cv2.IMREAD_COLOR)
            if image is None:
                raise EvidenceImageError(
                    f"sample {sample.id}: its crop {sample.image} is unreadable"
                )
            cached = self.model.embedder.embed([image])[0]
            self._vectors[sample.id] = cached
        return cached


def vouched_for(session: Session, samples: list[SampleRecord]) -> list[SampleRecord]:
    """The samples whose label the store itself can vouch for: one a person (or the teacher)
    gave, or an "honest" crop whose lane's transaction of that id is here, honest, with the
    crop's code among its scans.

    The sample's own ``reason``, ``transaction_id`` and ``code`` are whatever the lane said; a
    lane that invents three transaction ids for one mislabelled crop teaches nothing. A crop
    whose transaction has not arrived yet waits for it (the learner runs again)."""
    wanted = {(s.lane_id, s.transaction_id) for s in samples if s.review not in REVIEWED_LABELS}
    scanned: dict[tuple[str, str], set[str]] = {}
    for lane_id in {lane for lane, _ in wanted}:
        ids = [t for lane, t in wanted if lane == lane_id]
        for start in range(0, len(ids), 500):  # bound each IN list
            for record in session.exec(
                select(TransactionRecord).where(
                    TransactionRecord.lane_id == lane_id,
                    col(TransactionRecord.transaction_id).in_(ids[start : start + 500]),
                    TransactionRecord.honest == True,  # noqa: E712
                )
            ):
                scanned[(lane_id, record.transaction_id)] = {
                    str(line.get("key")) for line in record.scanned if line.get("key")
                }
    return [
        s
        for s in samples
        if s.review in REVIEWED_LABELS
        or (s.code is not None and s.code in scanned.get((s.lane_id, s.transaction_id), set()))
    ]


def signed_updates(
    engine: Engine, since: int, key: Ed25519PrivateKey, limit: int = 1000
) -> dict[str, Any]:
    """Entries after ``since``, signed by the store's key (covering the canonical JSON of
    everything but the signature). A row with ``withdraws`` takes back an earlier entry."""
    with Session(engine) as session:
        entries = list(
            session.exec(
                select(GalleryEntry)
                .where(col(GalleryEntry.id) > since)
                .order_by(col(GalleryEntry.id))
                .limit(limit)
            )
        )
    body: dict[str, Any] = {
        "since": since,
        "latest": entries[-1].id if entries else since,
        "entries": [
            {
                "id": e.id,
                "code": e.code,
                "vector": e.vector_b64,
                "embedder_sha256": e.embedder_sha256,
                "withdraws": e.withdraws,
            }
            for e in entries
        ],
    }
    return sign_json(body, key)


class LearningLoop(PokedLoop):
    """Runs the learner whenever new samples have arrived, at most every ``interval_s``."""

    def __init__(self, learner: GalleryLearner, interval_s: float = 2.0) -> None:
        super().__init__("gallery-learner", learner.learn, interval_s)
        self.learner = learner


def store_signing_key(settings: StoreSettings) -> Ed25519PrivateKey:
    """The store's own key for gallery updates: the configured one, or one made on the first
    start in the data folder. Lanes receive its public half when they enrol."""
    return load_or_make_key(settings.signing_key or settings.data_dir / "keys" / "store.key")


def store_key_id(settings: StoreSettings) -> str:
    """The fingerprint of the store's key, which enrolment tokens carry to the lanes."""
    return key_id(store_signing_key(settings).public_key())


def withdraw(session: Session, entry_id: int) -> GalleryEntry:
    """Take an entry back (a manager found it wrong): lanes drop it at their next update, and
    its sample is marked rejected so it never joins again."""
    entry = session.get(GalleryEntry, entry_id)
    if entry is None or entry.withdraws is not None:
        raise UnknownGalleryEntryError(f"no gallery entry {entry_id}")
    if entry.withdrawn:
        return entry
    entry.withdrawn = True
    session.add(entry)
    session.add(
        GalleryEntry(
            code=entry.code,
            vector_b64="",
            embedder_sha256=entry.embedder_sha256,
            transaction_id=entry.transaction_id,
            lane_id=entry.lane_id,
            withdrawn=True,
            withdraws=entry.id,
        )
    )
    sample = session.get(SampleRecord, entry.sample_id) if entry.sample_id else None
    if sample is not None:
        sample.review = "rejected"
        session.add(sample)
    return entry


def audit_sample(engine: Engine, size: int = 8, seed: int | None = None) -> list[dict[str, Any]]:
    """A random sample of the entries lanes use now, with their crops, for a person to check."""
    import random

    with Session(engine) as session:
        rows = list(
            session.exec(
                select(GalleryEntry, SampleRecord)
                .join(SampleRecord, col(SampleRecord.id) == col(GalleryEntry.sample_id))
                .where(GalleryEntry.withdrawn == False)  # noqa: E712
            )
        )
    chosen = random.Random(seed).sample(rows, min(size, len(rows)))
    return [
        {
            "id": e.id,
            "code": e.code,
            "lane_id": e.lane_id,
            "transaction_id": e.transaction_id,
            "image": sample.image,
            "added_at": e.added_at,
        }
        for e, sample in sorted(chosen, key=lambda pair: pair[0].id or 0)
    ]
