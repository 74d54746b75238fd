"""When an entry one store learned reaches every store: only once a second store learned the
same product alike, or a person at HQ confirmed it.

One store's lanes can be wrong in ways its own guards do not see (a lane that scans one code
over another product, a camera with a glare that makes two products alike), and an entry
released at once would carry that mistake to every store's lanes within seconds. So HQ holds
an entry until another store, on its own honest transactions, learned an entry for the same
code whose vector is at least ``agree_similarity`` alike to it while both were held (both are
then released; a released vector is in every store's gallery, so agreeing with one would let
a store shape a vector to pass), or until
an HQ user confirms it on the console's Gallery page (`laneguard hq confirm-entry`). The
trade: a product sold in one store only is recognised in the others only after a person
looks at it, and a chain-wide new product waits for its second store (in the end-to-end test
and the chain demo: seconds after the second store's third honest sale). The store that
learned an entry uses it from the start, as before.
"""

from __future__ import annotations

import base64
import logging

import numpy as np
from sqlmodel import Session, col, select

from hq_server.models import ChainGalleryEntry
from hq_server.outbox import HqOutbox
from laneguard.chain import GalleryDown
from product_db.errors import LaneGuardError
from product_db.models import utcnow
from store_server.auth import audit

log = logging.getLogger("laneguard.hq.gallery")
# Least cosine similarity of two stores' entries for a code that counts as agreement: the
# store learner's own consistency threshold lies near 0.53 for the shipped embedder (the
# bundle's gallery), so two entries this alike are two looks at one product.
AGREE_SIMILARITY = 0.6


class GalleryReleaseError(LaneGuardError, ValueError):
    """No held entry by that id (a withdrawal, one withdrawn, or one already released)."""


def _vector(entry: ChainGalleryEntry) -> np.ndarray:
    return np.frombuffer(base64.b64decode(entry.vector_b64), dtype="<f4")


def release(session: Session, outbox: HqOutbox, entry: ChainGalleryEntry, by: str) -> None:
    """Send ``entry`` to every store, signed by HQ, recording who released it."""
    assert entry.id is not None
    entry.released_at, entry.released_by = utcnow(), by[:64]
    session.add(entry)
    outbox.queue(
        session,
        f"gallery:{entry.id}",
        GalleryDown(
            hq_entry_id=entry.id,
            code=entry.code,
            vector=entry.vector_b64,
            embedder_sha256=entry.embedder_sha256,
            origin_store=entry.store_id,
            origin_entry_id=entry.store_entry_id,
        ),
    )


def release_on_agreement(
    session: Session, outbox: HqOutbox, entry: ChainGalleryEntry, threshold: float
) -> bool:
    """Release ``entry`` (just in from its store) and the other stores' held entries it
    agrees with, if any other store learned its code alike; whether it was released."""
    # Only entries still held: they were never sent to any store, so no store can shape a
    # vector to sit just close enough to one (a released vector is in every store's gallery).
    others = session.exec(
        select(ChainGalleryEntry).where(
            ChainGalleryEntry.code == entry.code,
            ChainGalleryEntry.embedder_sha256 == entry.embedder_sha256,
            ChainGalleryEntry.store_id != entry.store_id,
            ChainGalleryEntry.withdrawn == False,  # noqa: E712
            col(ChainGalleryEntry.withdraws).is_(None),
            col(ChainGalleryEntry.released_at).is_(None),
        )
    ).all()
    vector = _vector(entry)
    agreeing = [
        other
        for other, theirs in ((o, _vector(o)) for o in others)
        if len(theirs) == len(vector)  # another embedder's size: never alike
        and float(np.dot(vector, theirs)) >= threshold
    ]
    if not agreeing:
        log.info(
            "chain gallery: %s's entry %s for %s held until another store agrees or a person "
            "confirms it",
            entry.store_id,
            entry.id,
            entry.code,
        )
        return False
    release(session, outbox, entry, f"store:{agreeing[0].store_id}")
    for other in agreeing:
        release(session, outbox, other, f"store:{entry.store_id}")
    return True


def held_entries(session: Session) -> list[ChainGalleryEntry]:
    """Entries waiting for a second store or a person, oldest first."""
    return list(
        session.exec(
            select(ChainGalleryEntry)
            .where(
                col(ChainGalleryEntry.released_at).is_(None),
                ChainGalleryEntry.withdrawn == False,  # noqa: E712
                col(ChainGalleryEntry.withdraws).is_(None),
            )
            .order_by(col(ChainGalleryEntry.id))
        )
    )


def confirm(session: Session, outbox: HqOutbox, entry_id: int, username: str) -> ChainGalleryEntry:
    """A person at HQ releases a held entry to every store (audited)."""
    entry = session.get(ChainGalleryEntry, entry_id)
    if (
        entry is None
        or entry.withdraws is not None
        or entry.withdrawn
        or entry.released_at is not None
    ):
        raise GalleryReleaseError(f"no held gallery entry {entry_id}")
    release(session, outbox, entry, username)
    audit(session, username, "chain_gallery.confirmed", str(entry_id), code=entry.code)
    return entry
