"""The fast path's agreement threshold comes from the bundle's own gallery: how close crops of
different products get with that embedder; and a crop more like another known product than
like its own code's crops never joins."""

from __future__ import annotations

import numpy as np
import pytest

from checkout_node.model_bundle import load_models
from laneguard.gallery import Gallery
from store_server.learning import consistency_threshold, joining_crops, medoid


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
        own.extend(vectors @ medoid(vectors))
    assert 0.3 < threshold < 0.95
    assert float(np.mean(np.array(own) >= threshold)) > 0.5


def test_a_known_products_crop_under_a_new_code_never_joins_even_above_the_threshold() -> None:
    # The bundle knows product K. A new code N gets three honest crops and one crop of K (a
    # mislabel): all four lie above the consistency threshold of N's medoid, but K's crop is
    # more like K's references than like N's medoid, so only N's own three join.
    gallery = Gallery.build({"K": np.stack([_unit(0, 1, 0)])}, "sha", max_per_code=1)
    crops = np.stack([_unit(1, 0.1, 0), _unit(1, 0.12, 0.05), _unit(1, 0.08, -0.05)])
    crops = np.vstack([crops, _unit(0.7, 1, 0)])  # K's: 0.67 to N's medoid, 0.82 to K's reference
    assert sorted(joining_crops(crops, "N", gallery, consistency=0.5)) == [0, 1, 2]
    # With a bundle that does not know K, the same crop joins on the threshold alone.
    unrelated = Gallery.build({"Z": np.stack([_unit(0, 0, 1)])}, "sha", max_per_code=1)
    assert sorted(joining_crops(crops, "N", unrelated, consistency=0.5)) == [0, 1, 2, 3]
