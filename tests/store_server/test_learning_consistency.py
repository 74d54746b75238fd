"""The fast path's agreement threshold comes from the bundle's own gallery: how close crops of
different products get with that embedder."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_node.models import load_models
from laneguard.gallery import Gallery
from store_server.learning import consistency_threshold


def _unit(*values: float) -> np.ndarray:
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def test_the_threshold_is_what_other_products_reach_at_the_given_share() -> None:
    # Two products, two references each; every cross-product similarity is known by hand.
    gallery = Gallery.build(
        {
            "A": np.stack([_unit(1, 0, 0), _unit(0.96, 0.28, 0)]),
            "B": np.stack([_unit(0, 1, 0), _unit(0.6, 0.8, 0)]),
        },
        "sha",
        max_per_code=2,
    )
    strictest = consistency_threshold(gallery, cross_product_share=0.0)
    # Medoids (ties: the first reference) are (1,0,0) and (0,1,0); the references of the other
    # product reach 0, 0.28 (A's to B's medoid) and 0, 0.6 (B's to A's): the largest is 0.6.
    assert strictest == pytest.approx(0.6, abs=1e-4)
    assert consistency_threshold(gallery, cross_product_share=0.5) < strictest


def test_the_shipped_bundle_gives_a_threshold_its_own_products_mostly_pass() -> None:
    gallery = load_models().gallery
    threshold = consistency_threshold(gallery)
    labels = np.array(gallery.labels)
    own = []
    for code in np.unique(labels):
        vectors = gallery.vectors[labels == code]
        medoid = vectors[int(np.argmax((vectors @ vectors.T).sum(axis=1)))]
        own.extend(vectors @ medoid)
    assert 0.3 < threshold < 0.95
    assert float(np.mean(np.array(own) >= threshold)) > 0.5
