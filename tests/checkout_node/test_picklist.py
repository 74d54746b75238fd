"""The produce pick list: the camera's order when the store has no sales yet, the store's sales
deciding only where the camera is unsure, and never more than the list's size."""

from __future__ import annotations

import pytest

from checkout_node.picklist import PICK_LIST_SIZE, SalesPrior, pick_list


def test_a_new_store_gets_the_cameras_own_order() -> None:
    candidates = [("4011", 0.62), ("4131", 0.71), ("4015", 0.55), ("4225", 0.40), ("3082", 0.3)]
    proposals = pick_list(candidates)
    assert [p.code for p in proposals] == ["4131", "4011", "4015", "4225"]
    assert len(proposals) == PICK_LIST_SIZE
    assert sum(p.probability for p in pick_list(candidates, size=10)) == pytest.approx(1.0)
    assert proposals[0].similarity == 0.71


def test_the_stores_sales_decide_close_calls_only() -> None:
    sales = SalesPrior({"4011": 900, "4131": 10})
    close = [("4131", 0.70), ("4011", 0.69)]
    assert [p.code for p in pick_list(close, sales)] == ["4011", "4131"]
    confident = [("4131", 0.95), ("4011", 0.50)]
    assert [p.code for p in pick_list(confident, sales)] == ["4131", "4011"]


def test_a_code_listed_twice_keeps_its_best_evidence_and_nothing_is_empty() -> None:
    proposals = pick_list([("4011", 0.2), ("4011", 0.6), ("4131", 0.5)])
    assert [(p.code, p.similarity) for p in proposals] == [("4011", 0.6), ("4131", 0.5)]
    assert pick_list([]) == []
