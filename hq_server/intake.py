"""What HQ does with a store's message: check it is that store's (its subject, its envelope
and its key agree), then store it once, in one transaction with its receipt.

- samples: the crop (checked as a JPEG, saved content-named, 0600) and its labels join the
  chain's pool, from which HQ's slow path trains;
- gallery entries: join the chain's gallery and go out, signed by HQ, to every store once a
  second store agrees or a person confirms them (hq_server.gallery_release; a withdrawal goes
  out at once), so a product learned in one store is recognised in all;
- reviews: update the pooled sample's label (a rejection keeps it out of training);
- summaries and status: the newest of each replaces the last.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hq_server.gallery_release import AGREE_SIMILARITY, release_on_agreement
from hq_server.models import (
    ChainGalleryEntry,
    ChainReceipt,
    PooledSample,
    StoreDay,
    StoreStatus,
)
from hq_server.outbox import HqOutbox
from hq_server.stores import store_keys
from laneguard.chain import (
    STORE_ID,
    ChainMessageError,
    GalleryDown,
    GalleryUp,
    ReviewUp,
    SampleUp,
    StatusUp,
    SummaryUp,
    open_from_store,
)
from product_db.models import as_utc, utcnow
from store_server.auth import audit
from store_server.media import EvidenceImageError, MediaStore, decode_jpeg_b64

log = logging.getLogger("laneguard.hq.intake")


def check_vector(text: str) -> None:
    """A gallery vector: base64 float32, 16..4096 finite values, unit length."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ChainMessageError("gallery vector is not base64") from None
    if len(raw) % 4 or not 16 <= len(raw) // 4 <= 4096:
        raise ChainMessageError(f"gallery vector of {len(raw)} bytes is not 16-4096 float32s")
    vector = np.frombuffer(raw, dtype="<f4")
    if not np.all(np.isfinite(vector)) or abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
        raise ChainMessageError("gallery vector is not finite and of unit length")


@dataclass
class Intake:
    engine: Engine
    media: MediaStore
    outbox: HqOutbox
    on_gallery: Callable[[], None] = lambda: None
    agree_similarity: float = AGREE_SIMILARITY  # see hq_server.gallery_release

    def handle(self, subject: str, data: bytes) -> None:
        """Store one message (raises what ``handle_batch`` would report for it)."""
        error = self.handle_batch([(subject, data)])[0]
        if error is not None:
            raise error

    def handle_batch(self, messages: Sequence[tuple[str, bytes]]) -> list[Exception | None]:
        """Store a batch in one database transaction, each message in a savepoint of its own:
        one refused message (``ChainMessageError``) or one failed write leaves the others
        stored. Returns, per message, None (stored, or stored before) or why not."""
        results: list[Exception | None] = [None] * len(messages)
        opened: list[tuple[int, str, str, Any]] = []
        for index, (subject, data) in enumerate(messages):  # keys load before the write lock
            try:
                opened.append((index, *self._open(subject, data)))
            except ChainMessageError as error:
                results[index] = error
        stored: list[str] = []
        with Session(self.engine) as session:
            for index, store_id, message_id, body in opened:
                try:
                    with session.begin_nested():
                        if session.get(ChainReceipt, (store_id, message_id)) is None:
                            self._apply(session, store_id, body)
                            session.add(
                                ChainReceipt(
                                    store_id=store_id, message_id=message_id, kind=body.kind
                                )
                            )
                            stored.append(body.kind)
                except Exception as error:  # refused content, or a write that failed
                    results[index] = error
            session.commit()
        if "gallery" in stored:
            self.on_gallery()
        return results

    def _open(self, subject: str, data: bytes) -> tuple[str, str, Any]:
        parts = subject.split(".")
        if len(parts) != 4 or parts[:2] != ["lg", "store"] or not STORE_ID.match(parts[2]):
            raise ChainMessageError(f"subject {subject!r} is not lg.store.<store id>.<kind>")
        store_id = parts[2]
        message_id, body = open_from_store(
            data, store_id, lambda presented: store_keys.key(self.engine, store_id, presented)
        )
        if not message_id.startswith(f"{store_id}:") or body.kind != parts[3]:
            raise ChainMessageError(f"message {message_id!r} does not match subject {subject!r}")
        return store_id, message_id, body

    def _apply(self, session: Session, store_id: str, body: Any) -> None:
        if isinstance(body, SampleUp):
            self._sample(session, store_id, body)
        elif isinstance(body, GalleryUp):
            self._gallery(session, store_id, body)
        elif isinstance(body, ReviewUp):
            self._review(session, store_id, body)
        elif isinstance(body, SummaryUp):
            self._summary(session, store_id, body)
        elif isinstance(body, StatusUp):
            self._status(session, store_id, body)
        else:  # the envelope's union admits no other kind; one added later is not a status
            raise ChainMessageError(f"no handler for a {type(body).__name__} from {store_id}")

    def _sample(self, session: Session, store_id: str, body: SampleUp) -> None:
        if session.exec(
            select(PooledSample).where(
                PooledSample.store_id == store_id, PooledSample.sample_id == body.sample_id
            )
        ).first():
            return
        try:
            image = self.media.save(decode_jpeg_b64(body.image_b64))
        except EvidenceImageError as error:
            raise ChainMessageError(f"sample {body.sample_id}: {error}") from None
        fields = body.model_dump(exclude={"kind", "image_b64"})
        session.add(PooledSample(store_id=store_id, image=image, **fields))

    def _gallery(self, session: Session, store_id: str, body: GalleryUp) -> None:
        if body.withdraws is not None or body.withdraws_hq_entry is not None:
            self._withdraw(session, store_id, body)
            return
        check_vector(body.vector)
        if session.exec(
            select(ChainGalleryEntry).where(
                ChainGalleryEntry.store_id == store_id,
                ChainGalleryEntry.store_entry_id == body.entry_id,
            )
        ).first():
            return  # sent again (the store lost its cursor): HQ has it
        entry = ChainGalleryEntry(
            store_id=store_id,
            store_entry_id=body.entry_id,
            code=body.code,
            vector_b64=body.vector,
            embedder_sha256=body.embedder_sha256,
            transaction_id=body.transaction_id,
            lane_id=body.lane_id,
        )
        session.add(entry)
        session.flush()
        release_on_agreement(session, self.outbox, entry, self.agree_similarity)

    def _withdraw(self, session: Session, store_id: str, body: GalleryUp) -> None:
        if body.withdraws_hq_entry is not None:
            target = session.get(ChainGalleryEntry, body.withdraws_hq_entry)
        else:
            target = session.exec(
                select(ChainGalleryEntry).where(
                    ChainGalleryEntry.store_id == store_id,
                    ChainGalleryEntry.store_entry_id == body.withdraws,
                )
            ).first()
        if target is None or target.withdrawn or target.withdraws is not None:
            return
        if target.store_id != store_id:
            # A store takes back only what it learned: another store's entry it withdrew is
            # gone from its own lanes; for the chain, HQ's IT decides (`hq withdraw-entry`).
            audit(
                session,
                f"store:{store_id}",
                "chain_gallery.withdrawal_refused",
                str(target.id),
                code=target.code,
                learned_in=target.store_id,
            )
            log.warning(
                "chain gallery: store %s took back %s's entry %d (%s) for itself only",
                store_id,
                target.store_id,
                target.id,
                target.code,
            )
            return
        withdraw_chain_entry(session, self.outbox, target, store_id, body.entry_id)

    def _review(self, session: Session, store_id: str, body: ReviewUp) -> None:
        sample = session.exec(
            select(PooledSample).where(
                PooledSample.store_id == store_id, PooledSample.sample_id == body.sample_id
            )
        ).first()
        if sample is None:
            return  # a sample the store could not send (its crop gone)
        sample.review, sample.label, sample.reviewed_by = body.review, body.label, body.reviewed_by
        session.add(sample)

    def _summary(self, session: Session, store_id: str, body: SummaryUp) -> None:
        row = session.get(StoreDay, (store_id, body.day))
        if row is not None and as_utc(row.as_of) >= as_utc(body.as_of):
            return
        row = row or StoreDay(
            store_id=store_id,
            day=body.day,
            as_of=body.as_of,
            transactions=0,
            honest=0,
            currency=body.currency,
            alerts=[],
        )
        row.as_of, row.transactions, row.honest = body.as_of, body.transactions, body.honest
        row.currency = body.currency
        row.alerts = [a.model_dump() for a in body.alerts]
        session.add(row)

    def _status(self, session: Session, store_id: str, body: StatusUp) -> None:
        row = session.get(StoreStatus, store_id)
        if row is not None and as_utc(row.at) >= as_utc(body.at):
            return
        row = row or StoreStatus(store_id=store_id, at=body.at, software=body.software, lanes=[])
        row.at, row.software, row.backlog = body.at, body.software, body.backlog
        row.lanes = [lane.model_dump() for lane in body.lanes]
        row.production_sha256, row.rollout = body.production_sha256, body.rollout
        row.received_at = utcnow()
        session.add(row)


def withdraw_chain_entry(
    session: Session,
    outbox: HqOutbox,
    target: ChainGalleryEntry,
    withdrawn_by: str,
    store_entry_id: int | None = None,
) -> ChainGalleryEntry:
    """Take ``target`` back in every store: the row recording it (``withdrawn_by``: the store
    that learned it, or ``hq:<user>``) and its message to every store."""
    target.withdrawn = True
    row = ChainGalleryEntry(
        store_id=withdrawn_by[:48],
        store_entry_id=store_entry_id,
        code=target.code,
        vector_b64="",
        embedder_sha256=target.embedder_sha256,
        transaction_id=target.transaction_id,
        lane_id=target.lane_id,
        withdrawn=True,
        withdraws=target.id,
        released_at=utcnow(),
        released_by=withdrawn_by[:64],
    )
    session.add_all([target, row])
    session.flush()
    assert row.id is not None and target.id is not None
    log.warning(
        "chain gallery: %s took back entry %d (%s) for the chain",
        withdrawn_by,
        target.id,
        target.code,
    )
    outbox.queue(
        session,
        f"gallery:{row.id}",
        GalleryDown(
            hq_entry_id=row.id,
            code=target.code,
            vector="",
            embedder_sha256=target.embedder_sha256,
            origin_store=target.store_id,
            origin_entry_id=target.store_entry_id,
            withdraws=target.id,
        ),
    )
    return row


def withdraw_by_hq(session: Session, outbox: HqOutbox, entry_id: int, username: str) -> None:
    """HQ's IT takes back any store's entry for the whole chain (audited)."""
    target = session.get(ChainGalleryEntry, entry_id)
    if target is None or target.withdraws is not None:
        raise LookupError(f"HQ has no gallery entry {entry_id}")
    if target.withdrawn:
        return
    withdraw_chain_entry(session, outbox, target, f"hq:{username}")
    audit(session, username, "chain_gallery.withdrawn", str(entry_id), code=target.code)
