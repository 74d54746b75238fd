"""What HQ keeps, and for how long: a chain's pooled crops grow by tens of GB a day.

- pooled samples (rows and crops) older than ``pooled_days`` (HQ's setting, 180): the slow
  path learns from recent honest transactions, and a crop of a customer's shopping is kept no
  longer than learning needs it;
- HQ's outbox rows once published and older than the streams' retention (a store cut off longer
  than that enrols again), and receipts as old: no message that old can be delivered again,
  and what a store might resend after losing its cursor is stored once anyway (samples and
  gallery entries are unique per store and store id, summaries and status keep the newest).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hq_server.models import Broadcast, ChainReceipt, PooledSample
from laneguard.chain import RETENTION_DAYS
from product_db.models import utcnow
from store_server.auth import audit
from store_server.media import MediaStore

log = logging.getLogger("laneguard.hq.retention")
BATCH = 1000


@dataclass
class HqRetentionReport:
    samples: int = 0  # pooled samples deleted
    crops: int = 0  # crop files removed
    broadcasts: int = 0
    receipts: int = 0


def purge(
    engine: Engine, media: MediaStore, pooled_days: int, now: datetime | None = None
) -> HqRetentionReport:
    now = now or utcnow()
    report = HqRetentionReport()
    samples_before = now - timedelta(days=pooled_days)
    while True:
        with Session(engine) as session:
            rows = session.exec(
                select(PooledSample.id, PooledSample.image)
                .where(col(PooledSample.captured_at) < samples_before)
                .limit(BATCH)
            ).all()
            if not rows:
                break
            ids, images = [r[0] for r in rows], {r[1] for r in rows}
            session.exec(delete(PooledSample).where(col(PooledSample.id).in_(ids)))
            still_used = set(
                session.exec(select(PooledSample.image).where(col(PooledSample.image).in_(images)))
            )
            session.commit()
        report.samples += len(ids)
        report.crops += sum(media.delete(name) for name in images - still_used)
    messages_before = now - timedelta(days=RETENTION_DAYS)
    with Session(engine) as session:
        report.broadcasts = _delete(
            session,
            Broadcast,
            col(Broadcast.published_at).is_not(None),
            col(Broadcast.published_at) < messages_before,
        )
        report.receipts = _delete(
            session, ChainReceipt, col(ChainReceipt.received_at) < messages_before
        )
        if report.samples or report.broadcasts or report.receipts:
            audit(
                session,
                "retention",
                "hq.retention",
                f"{report.samples} samples",
                crops=report.crops,
                broadcasts=report.broadcasts,
                receipts=report.receipts,
                pooled_days=pooled_days,
            )
        session.commit()
    if report.samples:
        log.info("retention: %d pooled samples deleted (%d days)", report.samples, pooled_days)
    return report


def _delete(session: Session, table: type, *where: object) -> int:
    count = int(session.exec(select(func.count()).select_from(table).where(*where)).one())  # type: ignore[arg-type]
    if count:
        session.exec(delete(table).where(*where))  # type: ignore[arg-type]
    return count
