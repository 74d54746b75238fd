"""HQ's outbox to its stores: every message is sealed (signed with HQ's key) and written in
the same database transaction as the change it announces, then published by the JetStream
link, oldest first, and marked once the stream stored it. HQ stopping in between publishes it
again; the stream's duplicate window and the stores' inbox keep it once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select, update

from hq_server.models import Broadcast
from laneguard.chain import CatalogDown, GalleryDown, ReleaseDown, RolloutDown, hq_subject, seal
from laneguard.jetstream import Publication
from product_db.models import utcnow


@dataclass
class HqOutbox:
    engine: Engine
    key: Ed25519PrivateKey

    def queue(
        self,
        session: Session,
        message_id: str,
        body: GalleryDown | CatalogDown | ReleaseDown | RolloutDown,
        store_id: str | None = None,
    ) -> Broadcast:
        """Add a message for every store (or for ``store_id``) to ``session``'s transaction."""
        kind = body.kind
        full_id = f"hq:{message_id}"
        row = Broadcast(
            subject=hq_subject(kind, store_id),
            message_id=full_id,
            kind=kind,
            data=seal("hq", full_id, body, self.key),
        )
        session.add(row)
        return row

    def pending(self, limit: int) -> list[Publication]:
        with Session(self.engine) as session:
            rows = session.exec(
                select(Broadcast)
                .where(col(Broadcast.published_at).is_(None))
                .order_by(col(Broadcast.id))
                .limit(limit)
            ).all()
        return [Publication(r.subject, r.message_id, r.data) for r in rows]

    def published(self, batch: Sequence[Publication]) -> None:
        with Session(self.engine) as session:
            session.exec(
                update(Broadcast)
                .where(col(Broadcast.message_id).in_([p.message_id for p in batch]))
                .values(published_at=utcnow())
            )
            session.commit()

    def depth(self) -> int:
        with Session(self.engine) as session:
            return int(
                session.exec(
                    select(func.count()).where(col(Broadcast.published_at).is_(None))
                ).one()
            )
