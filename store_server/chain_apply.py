"""What a store does with HQ's messages: gallery entries learned in other stores join its own
gallery (its lanes fetch them as they fetch the store's, signed by the store), catalog
changes update its products (prices it overrides stay), releases are fetched from HQ and
published here, and rollout orders start (or undo) a rollout to its lanes.

Each message is applied once: its id goes into ``chain_inbox`` in the same database
transaction as its effect (the catalog's upsert, which keeps its own transaction, is
idempotent by itself), and a message the store cannot apply for now (HQ's file server down)
raises, so JetStream delivers it again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from laneguard.chain import (
    CatalogDown,
    ChainMessageError,
    GalleryDown,
    ReleaseDown,
    RolloutDown,
    check_hq_subject,
    open_from_hq,
)
from product_db.catalog import import_records
from product_db.errors import LaneGuardError
from product_db.models import Product
from product_db.records import ProductRecord, SoldBy
from store_server.auth import audit
from store_server.learning import withdraw
from store_server.models import BundleRelease, ChainInbox, GalleryEntry, PriceOverride, Rollout
from store_server.rollouts import (
    RolloutError,
    _active_lanes,
    active_rollout,
    publish_bundle,
    roll_back,
    start_rollout,
)

log = logging.getLogger("laneguard.server.chain")
HQ_USER = "hq"


class UnknownProductError(LaneGuardError, LookupError):
    """A price override for a code this store's catalog does not have."""


class ReleaseNotArrivedError(LaneGuardError, RuntimeError):
    """A rollout order for a release this store has not received from HQ yet; raised so that
    JetStream delivers the order again (it is not refused for good, as ChainMessageError is)."""


@dataclass
class ChainApplier:
    engine: Engine
    data_dir: Path
    store_id: str
    hq_key: Ed25519PublicKey
    hq_key_file: Path  # HQ's public key on disk: bundles HQ releases must carry its signature
    fetch_bundle: Callable[[str, int, Path], None]  # (sha256, size, target) from HQ

    def handle(self, subject: str, data: bytes) -> None:
        message_id, body = open_from_hq(data, self.hq_key)
        check_hq_subject(subject, body, self.store_id)
        with Session(self.engine) as session:
            if session.get(ChainInbox, message_id) is not None:
                return
        if isinstance(body, ReleaseDown):
            self._fetch(body)  # outside the transaction: it may take a while
        elif isinstance(body, CatalogDown):
            self._catalog(body)  # the catalog's upsert is a transaction of its own
        with Session(self.engine) as session:
            if isinstance(body, GalleryDown):
                self._gallery(session, body)
            elif isinstance(body, CatalogDown):
                pass
            elif isinstance(body, ReleaseDown):
                self._release(session, body)
            else:
                self._rollout(session, body)
            session.add(ChainInbox(message_id=message_id, kind=body.kind))
            session.commit()

    def _gallery(self, session: Session, body: GalleryDown) -> None:
        if body.withdraws is not None:  # taken back somewhere in the chain: here too
            if body.origin_store == self.store_id:
                mine = session.get(GalleryEntry, body.origin_entry_id or 0)
            else:
                mine = session.exec(
                    select(GalleryEntry).where(GalleryEntry.hq_entry_id == body.withdraws)
                ).first()
            if mine is not None and mine.id is not None and mine.withdraws is None:
                withdraw(session, mine.id)
            return
        if body.origin_store == self.store_id:
            return  # the store's own entry, back from HQ: it has it
        if session.exec(
            select(GalleryEntry).where(GalleryEntry.hq_entry_id == body.hq_entry_id)
        ).first():
            return
        session.add(
            GalleryEntry(
                code=body.code,
                vector_b64=body.vector,
                embedder_sha256=body.embedder_sha256,
                transaction_id=f"hq:{body.hq_entry_id}",
                lane_id=f"hq:{body.origin_store}",
                hq_entry_id=body.hq_entry_id,
                origin_store=body.origin_store,
            )
        )

    def _catalog(self, body: CatalogDown) -> None:
        with Session(self.engine) as session:
            overrides = {
                o.code: o.price_minor
                for o in session.exec(
                    select(PriceOverride).where(
                        col(PriceOverride.code).in_([p.code for p in body.products])
                    )
                )
            }
        records = [
            ProductRecord(
                code=p.code,
                display_code=p.display_code,
                code_kind=p.code_kind,
                name=p.name,
                brand=p.brand,
                price_minor=overrides.get(p.code, p.price_minor),
                currency=p.currency,
                category=p.category,
                sold_by=SoldBy(p.sold_by),
                age_restricted=p.age_restricted,
                active=p.active,
            )
            for p in body.products
        ]
        import_records(self.engine, records, source=f"hq change {body.change_id}")

    def _bundle_file(self, sha256: str) -> Path:
        return self.data_dir / "hq" / "bundles" / f"{sha256}.tar.gz"

    def _fetch(self, body: ReleaseDown) -> None:
        target = self._bundle_file(body.sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        self.fetch_bundle(body.sha256, body.size, partial)
        digest = hashlib.sha256(partial.read_bytes()).hexdigest()
        if digest != body.sha256:
            partial.unlink()
            raise ChainMessageError(f"release {body.version}: HQ's file is not the one announced")
        os.replace(partial, target)

    def _release(self, session: Session, body: ReleaseDown) -> None:
        publish_bundle(
            session,
            self.data_dir,
            self._bundle_file(body.sha256),
            HQ_USER,
            notes=f"from HQ: {body.notes}"[:500],
            trusted_keys=[self.hq_key_file],
        )

    def _rollout(self, session: Session, body: RolloutDown) -> None:
        release = session.exec(
            select(BundleRelease).where(BundleRelease.sha256 == body.sha256)
        ).first()
        if release is None or release.id is None:
            raise ReleaseNotArrivedError(
                f"rollout of {body.version}: its release has not arrived yet"
            )
        current = active_rollout(session)
        if body.action == "rollback":
            if current is not None and current.release_id == release.id:
                roll_back(session, current, HQ_USER, body.reason or "HQ rolled the wave back")
            else:
                self._back_from_completed(session, release.id, body.reason)
            return
        if current is not None and current.release_id == release.id:
            return
        if current is not None:
            roll_back(session, current, HQ_USER, f"HQ rolls out {body.version}")
        lanes = _active_lanes(session)
        if not lanes:
            log.warning("chain: HQ rollout of %s: this store has no lanes", body.version)
            return
        try:
            start_rollout(
                session, release.id, lanes[:1], HQ_USER, shares=(1.0,), soak_s=body.soak_s
            )
        except RolloutError as error:  # already what every lane runs
            log.info("chain: HQ rollout of %s: %s", body.version, error)

    def _back_from_completed(self, session: Session, release_id: int, reason: str) -> None:
        """A store whose lanes all took the release when HQ halts the wave: that rollout is
        marked rolled back, so production is again what the lanes ran before it (the previous
        completed rollout's bundle, or the one they shipped with) and they go back to it."""
        done = session.exec(
            select(Rollout)
            .where(Rollout.release_id == release_id, Rollout.state == "completed")
            .order_by(col(Rollout.id).desc())
        ).first()
        if done is None:
            return
        done.state, done.reason = "rolled_back", (reason or "HQ rolled the wave back")[:500]
        session.add(done)
        audit(session, HQ_USER, "rollout.rolled_back", str(done.id), reason=done.reason)
        log.warning("chain: going back from release %d: %s", release_id, done.reason)


def fetch_from_hq(
    hq_url: str, credential: str, verify: ssl.SSLContext | bool = True
) -> Callable[[str, int, Path], None]:
    """Download a release file from HQ with the store's credential, at most its stated size
    (``verify``: how HQ's HTTPS certificate is checked, chain_link.hq_verify)."""

    def fetch(sha256: str, size: int, target: Path) -> None:
        got = 0
        with (
            httpx.stream(
                "GET",
                f"{hq_url.rstrip('/')}/api/v1/hq/bundles/{sha256}",
                headers={"Authorization": f"Bearer {credential}"},
                timeout=httpx.Timeout(10.0, read=60.0),
                verify=verify,
            ) as response,
            target.open("wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 16):
                got += len(chunk)
                if got > size:
                    raise ChainMessageError(f"bundle {sha256[:12]}: HQ sent more than {size} B")
                out.write(chunk)
        os.chmod(target, 0o600)

    return fetch


def set_price_override(engine: Engine, code: str, price_minor: int, username: str) -> None:
    """This store's own price for ``code``: applied now, and kept over HQ's changes."""
    with Session(engine) as session:
        product = session.get(Product, code)
        if product is None:
            raise UnknownProductError(f"no product {code} in this store's catalog")
        override = session.get(PriceOverride, code) or PriceOverride(
            code=code, price_minor=price_minor, set_by=username
        )
        override.price_minor, override.set_by = price_minor, username
        product.price_minor = price_minor
        session.add_all([override, product])
        audit(session, username, "catalog.price_override", code, price_minor=price_minor)
        session.commit()
