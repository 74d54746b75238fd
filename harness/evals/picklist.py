"""`laneguard eval picklist`: how often the produce pick list holds the right PLU at positions 1,
2 and 4, on folders of class sub-folders (for example the real produce photos: reference from
their train split, query from their test split), ranked exactly as the lane ranks it
(checkout_node.picklist), with the store's sales as the prior when given. Its command line and
JSON are a contract, as `eval recognition`'s: outside scorers run it on their own photos.

Also the measurement behind the prior: queries drawn as a store with a skewed sales mix would
weigh them, ranked with a flat prior and with that store's sales (`sales_mix_comparison`).
"""

from __future__ import annotations

import csv
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from checkout_node.picklist import PICK_LIST_SIZE, TEMPERATURE, SalesPrior, pick_list
from laneguard.bundle import sha256_file
from laneguard.embedding import Embedder
from laneguard.gallery import Gallery
from product_db.errors import LaneGuardError
from trainer.embedder import embed_paths, image_folder

POSITIONS = (1, 2, 4)


class PicklistError(LaneGuardError, ValueError):
    """A prior file or photo folder the pick-list evaluation cannot use."""


def read_prior(path: Path) -> SalesPrior:
    """A store's sales per PLU from a CSV with the columns ``code`` and ``count``."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError) as error:
        raise PicklistError(f"{path}: cannot read the prior ({error})") from None
    counts: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        code, count = (row.get("code") or "").strip(), (row.get("count") or "").strip()
        if not code or not count.isdigit():
            raise PicklistError(
                f"{path}:{line}: each row needs a code and a whole number count (columns "
                f"code,count), got {row}"
            )
        counts[code] = counts.get(code, 0) + int(count)
    return SalesPrior(counts)


def _references(
    embedder: Embedder, reference: Path, per_class: int | None
) -> dict[str, np.ndarray]:
    return {
        code: embed_paths(embedder, paths[:per_class] if per_class else paths)
        for code, paths in image_folder(reference).items()
    }


def ranked_hits(
    gallery: Gallery, queries: dict[str, np.ndarray], prior: SalesPrior | None
) -> list[tuple[str, int | None]]:
    """(true code, its 1-based position in the pick list or None) for every query."""
    hits: list[tuple[str, int | None]] = []
    for code, vectors in sorted(queries.items()):
        if len(vectors) == 0:
            continue
        scores = gallery.class_scores(vectors)
        for row in scores:
            proposals = pick_list(zip(gallery.codes, row.tolist()), prior, PICK_LIST_SIZE)
            codes = [p.code for p in proposals]
            hits.append((code, codes.index(code) + 1 if code in codes else None))
    return hits


def hit_shares(hits: list[tuple[str, int | None]]) -> dict[str, float]:
    total = len(hits)
    return {
        f"top{k}": round(sum(1 for _, at in hits if at is not None and at <= k) / total, 4)
        if total
        else 0.0
        for k in POSITIONS
    }


def evaluate_picklist(
    model: Path,
    reference: Path,
    query: Path,
    prior_csv: Path | None = None,
    refs_per_class: int | None = None,
) -> dict[str, Any]:
    """Gallery from ``reference/<class>/*`` (the first ``refs_per_class`` of each, or all),
    pick lists for ``query/<class>/*``; JSON-able result."""
    embedder = Embedder(model)
    prior = read_prior(prior_csv) if prior_csv is not None else None
    refs = _references(embedder, reference, refs_per_class)
    query_paths = image_folder(query)
    start = time.perf_counter()
    queries = {code: embed_paths(embedder, paths) for code, paths in query_paths.items()}
    gallery = Gallery.build(refs, sha256_file(model))
    hits = ranked_hits(gallery, {c: v for c, v in queries.items() if c in refs}, prior)
    elapsed = time.perf_counter() - start
    per_class = {
        code: round(sum(1 for c, at in hits if c == code and at == 1) / n, 4)
        for code, n in sorted(Counter(c for c, _ in hits).items())
    }
    return {
        **hit_shares(hits),
        "per_class": per_class,
        "n_reference": sum(len(v) for v in refs.values()),
        "n_query": len(hits),
        "n_classes": len(refs),
        "query_classes_without_reference": sorted(set(query_paths) - set(refs)),
        "ms_per_image": round(1000 * elapsed / max(len(hits), 1), 2),
        "embedder": str(model),
        "prior": str(prior_csv) if prior_csv is not None else None,
        "pick_list_size": PICK_LIST_SIZE,
        "temperature": TEMPERATURE,
    }


def zipf_sales(
    codes: list[str], seed: int, exponent: float = 1.0, total: int = 10_000
) -> dict[str, int]:
    """A store's sales per PLU, a few selling most (Zipf over a shuffled order of ``codes``)."""
    order = list(codes)
    random.Random(seed).shuffle(order)
    weights = [1 / (rank + 1) ** exponent for rank in range(len(order))]
    scale = total / sum(weights)
    return {code: max(1, round(w * scale)) for code, w in zip(order, weights)}


def sales_mix_comparison(
    gallery: Gallery,
    queries: dict[str, np.ndarray],
    sales: dict[str, int],
    draws: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Queries drawn as this store's customers would bring them (weighted by ``sales``), pick
    lists with a flat prior and with the store's sales; top-1/2/4 of each."""
    rng = np.random.default_rng(seed)
    codes = [c for c in sorted(queries) if len(queries[c]) and c in sales]
    weights = np.array([sales[c] for c in codes], float)
    chosen = rng.choice(len(codes), size=draws, p=weights / weights.sum())
    drawn: dict[str, list[np.ndarray]] = {}
    for index in chosen:
        code = codes[index]
        vectors = queries[code]
        drawn.setdefault(code, []).append(vectors[rng.integers(len(vectors))])
    stacked = {code: np.stack(vs) for code, vs in drawn.items()}
    flat = hit_shares(ranked_hits(gallery, stacked, None))
    weighed = hit_shares(ranked_hits(gallery, stacked, SalesPrior(sales)))
    top_share = max(sales.values()) / sum(sales.values())
    return {
        "draws": draws,
        "best_seller_share": round(top_share, 4),
        "entropy_bits": round(
            -sum(
                (n / sum(sales.values())) * math.log2(n / sum(sales.values()))
                for n in sales.values()
            ),
            3,
        ),
        "flat_prior": flat,
        "sales_prior": weighed,
    }


def produce_prior_benchmark(
    model: Path,
    photos_root: Path,
    refs_per_class: int = 5,
    exponents: tuple[float, ...] = (0.8, 1.0, 1.2),
    stores: int = 3,
) -> dict[str, Any]:
    """The pick list on the real produce photos (gallery: the first ``refs_per_class`` train
    photos of each class; queries: the test split) with a flat prior, then in ``stores``
    simulated stores per Zipf ``exponent`` (sales of the 50 PLUs, shuffled), queries drawn as
    each store's customers bring them, ranked without and with that store's sales."""
    from simulator.produce import produce_class_map

    embedder = Embedder(model)
    plu_of = produce_class_map()
    refs = {
        plu_of[c]: v
        for c, v in _references(embedder, photos_root / "images" / "train", refs_per_class).items()
    }
    queries = {
        plu_of[c]: embed_paths(embedder, paths)
        for c, paths in image_folder(photos_root / "images" / "test").items()
        if plu_of.get(c) in refs
    }
    gallery = Gallery.build(refs, sha256_file(model))
    rows = []
    for exponent in exponents:
        for store in range(stores):
            sales = zipf_sales(gallery.codes, seed=store, exponent=exponent)
            mix = sales_mix_comparison(gallery, queries, sales, seed=store)
            rows.append({"zipf_exponent": exponent, "store": store, **mix})
    return {
        "refs_per_class": refs_per_class,
        "n_query": sum(len(v) for v in queries.values()),
        "flat_on_the_test_split": hit_shares(ranked_hits(gallery, queries, None)),
        "temperature": TEMPERATURE,
        "stores": rows,
    }
