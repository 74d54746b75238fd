"""HQ to stores, beyond the gallery: catalog and price changes (a store's own price stays),
and a gallery entry: taken back in every store by the store that learned it or by HQ's IT,
only in its own by another store."""

from __future__ import annotations

import base64
import time
from dataclasses import replace

import numpy as np
import pytest
from sqlmodel import Session, select

from hq_server.catalog import push_catalog_changes
from hq_server.gallery_release import confirm, held_entries
from hq_server.intake import withdraw_by_hq
from hq_server.models import ChainGalleryEntry
from product_db import SAMPLE_CATALOG
from product_db.catalog import import_records
from product_db.catalog_io import read_catalog_file
from product_db.db import make_engine
from product_db.models import Product
from store_server.chain_apply import UnknownProductError, set_price_override
from store_server.learning import withdraw
from store_server.models import AuditEntry, GalleryEntry
from tests.helpers.chain import wait_for
from tests.hq_server.conftest import Chain


def _product(url: str, code: str) -> Product | None:
    engine = make_engine(url)
    with Session(engine) as session:
        product = session.get(Product, code)
    engine.dispose()
    return product


def test_catalog_changes_reach_every_store_and_a_local_price_stays(chain: Chain) -> None:
    hq = chain.hq_app.state
    records = read_catalog_file(SAMPLE_CATALOG).records
    import_records(hq.engine, records, "chain catalog")
    assert push_catalog_changes(hq.engine, hq.outbox) == len(records)
    hq.link.wake()
    code = records[0].code
    for site in chain.sites.values():
        wait_for(
            lambda site=site: _product(site.database_url, code), 30, f"{site.store_id}'s catalog"
        )
    a = chain.sites["A"]
    engine_a = make_engine(a.database_url)
    set_price_override(engine_a, code, 1, "mia")
    with pytest.raises(UnknownProductError, match="no product"):
        set_price_override(engine_a, "00000000000000", 1, "mia")
    engine_a.dispose()

    # HQ raises the price: B and C take it, A keeps its own.
    raised = replace(records[0], price_minor=records[0].price_minor + 100)
    time.sleep(0.01)
    import_records(hq.engine, [raised], "price change")
    assert push_catalog_changes(hq.engine, hq.outbox) >= 1
    hq.link.wake()
    for store_id in "BC":
        site = chain.sites[store_id]
        wait_for(
            lambda site=site: (
                (p := _product(site.database_url, code)) is not None
                and p.price_minor == raised.price_minor
            ),
            30,
            f"{store_id} to take HQ's price",
        )
    product_a = _product(a.database_url, code)
    assert product_a is not None and product_a.price_minor == 1


def _held_at_hq(chain: Chain) -> int | None:
    engine = make_engine(chain.hq_database_url)
    with Session(engine) as session:
        held = held_entries(session)
    engine.dispose()
    return held[0].id if held else None


def test_a_store_takes_back_only_its_own_entries_and_hq_any(chain: Chain) -> None:
    """Store A learned an entry (written here as its learner would); HQ's IT confirms it for
    the chain (no other store learned it). B's manager finds it
    wrong and withdraws B's copy: B's lanes drop it, but A's and C's keep it (a store cannot
    take back what another store learned; HQ audits the refusal). HQ's IT withdraws it for
    the chain (`hq withdraw-entry`): A and C drop it too. A's own withdrawal of its own entry
    would have gone chain-wide."""
    a = chain.sites["A"]
    vector = np.random.default_rng(3).normal(size=64).astype("<f4")
    vector /= np.linalg.norm(vector)
    engine_a = make_engine(a.database_url)
    with Session(engine_a) as session:
        session.add(
            GalleryEntry(
                code="4011",
                vector_b64=base64.b64encode(vector.astype("<f4").tobytes()).decode(),
                embedder_sha256="e" * 64,
                transaction_id="tx-1",
                lane_id="lane-A",
            )
        )
        session.commit()

    def copy_in(store_id: str) -> GalleryEntry | None:
        engine = make_engine(chain.sites[store_id].database_url)
        with Session(engine) as session:
            row = session.exec(select(GalleryEntry).where(GalleryEntry.code == "4011")).first()
        engine.dispose()
        return row

    # One store's entry waits at HQ until a second store agrees or a person confirms it.
    held = wait_for(lambda: _held_at_hq(chain), 30, "HQ to hold A's entry")
    time.sleep(1.0)
    assert copy_in("B") is None, "held: not yet in the other stores"
    hq_engine = make_engine(chain.hq_database_url)
    with Session(hq_engine) as session:
        confirm(session, chain.hq_app.state.outbox, held, "ines")
        session.commit()
    hq_engine.dispose()
    chain.hq_app.state.link.wake()
    b_copy = wait_for(lambda: copy_in("B"), 30, "B's copy of A's entry")
    wait_for(lambda: copy_in("C"), 30, "C's copy of A's entry")
    engine_b = make_engine(chain.sites["B"].database_url)
    with Session(engine_b) as session:
        withdraw(session, b_copy.id or 0)
        session.commit()
    engine_b.dispose()
    hq = chain.hq_app.state

    def refused() -> bool:
        with Session(hq.engine) as session:
            return any(
                e.action == "chain_gallery.withdrawal_refused" and e.username == "store:B"
                for e in session.exec(select(AuditEntry))
            )

    wait_for(refused, 30, "HQ to refuse B's chain-wide withdrawal")
    assert [copy_in(s).withdrawn for s in "ABC"] == [False, True, False]  # type: ignore[union-attr]
    with Session(hq.engine) as session:
        entry = session.exec(select(ChainGalleryEntry)).one()
        withdraw_by_hq(session, hq.outbox, entry.id or 0, "chain-it")
        session.commit()
    hq.link.wake()
    for store_id in "AC":
        wait_for(
            lambda store_id=store_id: (row := copy_in(store_id)) is not None and row.withdrawn,
            30,
            f"{store_id} to drop the entry",
        )
    hq_rows = list(Session(hq.engine).exec(select(ChainGalleryEntry)))
    assert [(r.withdrawn, r.store_id) for r in hq_rows] == [(True, "A"), (True, "hq:chain-it")]
    engine_a.dispose()
