"""Reconciliation of seen items against scans: every alert type, voids, quantities, the final
check, on the real sample catalog's products and prices."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkout_node.catalog import LaneCatalog
from checkout_node.reconcile.assignment import hungarian, match_with_unmatched
from checkout_node.reconcile.model import Scan, SeenItem
from checkout_node.reconcile.reconciler import ReconcileError, TransactionReconciler
from product_db.models import SoldBy
from product_db.records import ProductRecord

T1, T2 = 0.95, 0.85
CATALOG = LaneCatalog.from_file()
PACKAGED = sorted(
    (p for p in CATALOG.products.values() if p.code_kind != "plu"), key=lambda p: p.price_minor
)
PRODUCE = sorted(
    (p for p in CATALOG.products.values() if p.code_kind == "plu"), key=lambda p: p.price_minor
)
CHEAP, DEAR = PACKAGED[0], PACKAGED[-1]
OTHER = PACKAGED[len(PACKAGED) // 2]


def item(
    track: int, crossed: float, code: str | None, band: str = "trusted", score: float = 0.97
) -> SeenItem:
    candidates = ((code, score),) if code else ()
    return SeenItem(track, crossed, crossed - 2.0, code, band, score, candidates)  # type: ignore[arg-type]


def lane() -> TransactionReconciler:
    return TransactionReconciler("tx-1", CATALOG, T1, T2)


def test_honest_transaction_pairs_everything_and_raises_nothing() -> None:
    rec = lane()
    changes = []
    for n, product in enumerate((CHEAP, DEAR, OTHER)):
        changes += rec.add_scan(Scan.of(product.display_code, 1.0 + 3 * n))
        changes += rec.add_item(item(n + 1, 2.0 + 3 * n, product.code))
    outcome, final = rec.finish(12.0)
    assert changes == [] and final == []
    assert outcome.honest
    assert outcome.seen_codes == [CHEAP.code, DEAR.code, OTHER.code]


def test_unscanned_item_alerts_at_once_and_a_rescan_resolves_it() -> None:
    rec = lane()
    rec.add_scan(Scan.of(CHEAP.display_code, 1.0))
    rec.add_item(item(1, 2.0, CHEAP.code))
    raised = rec.add_item(item(2, 5.0, DEAR.code))
    assert [(c.change, c.alert.type, c.alert.track_id) for c in raised] == [
        ("raised", "unscanned_item", 2)
    ]
    assert raised[0].alert.value_minor == DEAR.price_minor
    assert raised[0].alert.severity == ("high" if DEAR.price_minor >= 500 else "medium")
    resolved = rec.add_scan(
        Scan.of(DEAR.display_code, 20.0)
    )  # the cashier scans it after the banner
    assert [(c.change, c.alert.resolution) for c in resolved] == [("resolved", "rescanned")]
    outcome, final = rec.finish(25.0)
    assert final == [] and outcome.seen_codes == [CHEAP.code, DEAR.code]


def test_the_next_items_scan_does_not_silence_an_unscanned_alert() -> None:
    rec = lane()
    alert = rec.add_item(item(1, 2.0, DEAR.code, band="of_interest", score=0.9))[0].alert
    assert rec.add_scan(Scan.of(OTHER.display_code, 4.0)) == []  # the next item's scan
    assert alert.status == "open"
    assert rec.add_item(item(2, 5.0, OTHER.code)) == []  # ... which pays for the next item
    resolved = rec.add_scan(Scan.of(DEAR.display_code, 9.0))  # the cashier rescans the first
    assert [c.alert.alert_id for c in resolved] == [alert.alert_id]


def test_an_unknown_items_alert_is_not_silenced_by_the_next_items_scan_just_after() -> None:
    # Loose produce the recogniser cannot name is skip-scanned; 1.25 s after it reached
    # bagging, the cashier scans the next item, which crosses 0.45 s later. That scan is the
    # next item's: the unscanned alert stays open, and the next item raises nothing.
    rec = lane()
    first = rec.add_item(item(1, 7.73, None, band="unknown", score=0.66))
    assert [c.alert.type for c in first] == ["unscanned_item"]
    assert rec.add_scan(Scan.of(OTHER.display_code, 8.98)) == []
    assert rec.add_item(item(2, 9.43, OTHER.code)) == []
    outcome, final = rec.finish(12.0)
    assert final == [] and first[0].alert.status == "open"
    assert not outcome.honest and outcome.seen_codes == [None, OTHER.code]


def test_a_scan_a_moment_after_an_unknown_item_crossed_pays_for_it() -> None:
    # Scanner and camera disagree on the moment by a fraction of a second.
    rec = lane()
    rec.add_item(item(1, 2.0, None, band="unknown", score=0.5))
    resolved = rec.add_scan(Scan.of(OTHER.display_code, 2.3))
    assert [(c.change, c.alert.resolution) for c in resolved] == [("resolved", "rescanned")]
    outcome, final = rec.finish(6.0)
    assert final == [] and outcome.seen_codes == [OTHER.code]


def test_ticket_switch_and_plu_swap_are_switches_weighted_by_the_price_difference() -> None:
    rec = lane()
    rec.add_scan(Scan.of(CHEAP.display_code, 1.0))
    ticket = rec.add_item(item(1, 2.0, DEAR.code))
    assert ticket[0].alert.type == "switch" and ticket[0].alert.subtype == "ticket"
    assert ticket[0].alert.value_minor == DEAR.price_minor - CHEAP.price_minor
    cheap_fruit, dear_fruit = PRODUCE[0], PRODUCE[-1]
    rec.add_scan(Scan.of(cheap_fruit.display_code, 4.0, source="keypad", weight_g=800))
    plu = rec.add_item(item(2, 5.0, dear_fruit.code))
    assert plu[0].alert.type == "switch" and plu[0].alert.subtype == "plu"

    # A per-kg price is weighed by the scale's 800 g; a PLU sold by the piece is its price.
    def worth(product: ProductRecord) -> int:
        per_kg = product.sold_by == SoldBy.weight
        return round(product.price_minor * 0.8) if per_kg else product.price_minor

    assert dear_fruit.sold_by == SoldBy.weight
    assert plu[0].alert.value_minor == worth(dear_fruit) - worth(cheap_fruit)
    outcome, _ = rec.finish(9.0)
    assert not outcome.honest
    assert outcome.seen_codes == [DEAR.code, dear_fruit.code]  # what was seen, not what was paid


def test_a_contradicting_scan_after_the_crossing_is_the_next_items_not_a_switch() -> None:
    rec = lane()
    raised = rec.add_item(item(1, 6.6, DEAR.code))  # skip-scanned
    assert [c.alert.type for c in raised] == ["unscanned_item"]
    next_scan = Scan.of(CHEAP.display_code, 7.5)  # the next item's scan, 0.9 s later
    rec.add_scan(next_scan)
    outcome, final = rec.finish(9.5)  # ... and the next item was never seen
    assert raised[0].alert.status == "open"
    assert final == []  # nothing says an item was there: a quiet entry
    assert [a.type for a in outcome.alerts] == ["unscanned_item"]
    assert outcome.unseen_scans == [next_scan.event_id]


def test_a_close_second_is_no_switch_but_a_product_far_from_a_trusted_item_is() -> None:
    # Look-alike produce: the recogniser trusts PRODUCE[-1], but the scanned PRODUCE[0] is a
    # close second. Not evidence of a switch.
    rec = lane()
    look_alike = SeenItem(
        1, 2.0, 0.5, PRODUCE[-1].code, "trusted", 0.97,
        ((PRODUCE[-1].code, 0.97), (PRODUCE[0].code, 0.93)),
    )  # fmt: skip
    rec.add_scan(Scan.of(PRODUCE[0].display_code, 1.0, source="keypad"))
    assert rec.add_item(look_alike) == []
    # Produce keyed as other produce: only a trusted identity makes it a switch; one merely
    # "of interest" is not sure enough (real produce is told apart only moderately).
    unsure = SeenItem(
        2, 5.0, 3.5, PRODUCE[-1].code, "of_interest", 0.9,
        ((PRODUCE[-1].code, 0.9), (PRODUCE[1].code, 0.6)),
    )  # fmt: skip
    rec.add_scan(Scan.of(PRODUCE[1].display_code, 4.0, source="keypad"))
    assert rec.add_item(unsure) == []
    far = SeenItem(
        3, 9.0, 7.5, PRODUCE[-1].code, "trusted", 0.97,
        ((PRODUCE[-1].code, 0.97), (PRODUCE[1].code, 0.6)),
    )  # fmt: skip
    rec.add_scan(Scan.of(PRODUCE[1].display_code, 8.0, source="keypad"))
    assert [c.alert.type for c in rec.add_item(far)] == ["switch"]


def test_an_unsure_identity_takes_the_scan_and_is_no_switch() -> None:
    # A product the gallery does not know yet (the new-product case): scanned, counted, honest.
    rec = lane()
    rec.add_scan(Scan.of(OTHER.display_code, 1.0))
    assert rec.add_item(item(1, 2.5, None, band="unknown", score=0.4)) == []
    outcome, final = rec.finish(6.0)
    assert final == [] and outcome.honest and outcome.seen_codes == [OTHER.code]


def test_a_scan_without_an_item_is_a_quiet_entry_unless_an_item_was_lost_around_it() -> None:
    """The rule: no item seen for a scan is recorded, not shown, unless a product track was
    lost in the scan area from ``lost_before_s`` before the scan to the end of its window."""
    rec = lane()
    quiet = Scan.of(OTHER.display_code, 1.0)
    rec.add_scan(quiet)
    assert rec.tick(5.0) == [] and rec.tick(9.5) == []  # the window passed: quiet
    assert rec.quiet == {quiet.event_id}
    assert rec.add_lost(30.0) == []  # a product lost much later is not its item
    followed = Scan.of(CHEAP.display_code, 20.0)
    rec.add_scan(followed)
    assert rec.add_lost(19.0) == []  # evidence before the window has passed: nothing yet
    notes = rec.tick(28.5)
    assert [(c.alert.type, c.alert.severity, c.alert.scan_event_id) for c in notes] == [
        ("scan_without_item", "note", followed.event_id)
    ]
    assert rec.tick(40.0) == []  # raised once
    late = Scan.of(DEAR.display_code, 50.0)
    rec.add_scan(late)
    assert rec.tick(58.5) == []  # quiet at first ...
    evidence = rec.add_lost(52.0)  # ... until the camera reports the item it lost
    assert [(c.alert.type, c.alert.scan_event_id) for c in evidence] == [
        ("scan_without_item", late.event_id)
    ]
    outcome, final = rec.finish(60.0)
    assert final == []
    assert outcome.unseen_scans == [quiet.event_id, followed.event_id, late.event_id]
    assert not outcome.honest  # two notes stand


def test_a_transaction_whose_only_difference_is_a_quiet_scan_is_honest() -> None:
    rec = lane()
    rec.add_scan(Scan.of(CHEAP.display_code, 1.0))
    rec.add_item(item(1, 2.0, CHEAP.code))
    rec.add_scan(Scan.of(OTHER.display_code, 4.0))  # the camera missed this one
    outcome, final = rec.finish(14.0)
    assert final == [] and outcome.alerts == [] and outcome.honest
    assert len(outcome.unseen_scans) == 1 and len(outcome.pairs) == 1


def test_quantity_key_pays_for_the_followers_and_one_too_many_is_a_quantity_mismatch() -> None:
    rec = lane()
    rec.add_scan(Scan.of(OTHER.display_code, 1.0, quantity=2))
    assert rec.add_item(item(1, 2.0, OTHER.code)) == []
    assert rec.add_item(item(2, 5.5, OTHER.code)) == []  # the second unit waits longer
    third = rec.add_item(item(3, 8.0, OTHER.code))
    assert [c.alert.type for c in third] == ["quantity_mismatch"]


def test_void_after_bagging_makes_the_item_unscanned() -> None:
    rec = lane()
    rec.add_scan(Scan.of(DEAR.display_code, 1.0))
    rec.add_item(item(1, 2.0, DEAR.code))
    changes = rec.void(DEAR.display_code, 4.0)
    assert [(c.change, c.alert.type, c.alert.subtype) for c in changes] == [
        ("raised", "unscanned_item", "voided")
    ]
    with pytest.raises(ReconcileError, match="no scanned unit"):
        rec.void(CHEAP.display_code, 5.0)


def test_void_of_an_unpaired_scan_takes_that_one() -> None:
    rec = lane()
    rec.add_scan(Scan.of(CHEAP.display_code, 1.0))
    rec.add_item(item(1, 2.0, CHEAP.code))
    rec.add_scan(Scan.of(CHEAP.display_code, 3.0))  # scanned twice by mistake
    assert rec.void(CHEAP.display_code, 3.5) == []
    outcome, final = rec.finish(15.0)
    assert final == [] and outcome.honest


def test_final_check_undoes_a_greedy_pairing_and_withdraws_its_switch() -> None:
    rec = lane()
    rec.add_scan(Scan.of(CHEAP.display_code, 1.0))
    rec.add_scan(Scan.of(DEAR.display_code, 1.5))
    # An item the recogniser cannot name takes the scan nearest in time (DEAR) ...
    assert rec.add_item(item(1, 2.0, None, band="unknown", score=0.3)) == []
    # ... so the next item, confidently DEAR, finds only CHEAP left: a switch, for now.
    early = rec.add_item(item(2, 3.0, DEAR.code))
    assert [c.alert.type for c in early] == ["switch"]
    outcome, final = rec.finish(6.0)
    assert [(c.change, c.alert.type) for c in final] == [("withdrawn", "switch")]
    assert outcome.honest and outcome.seen_codes == [CHEAP.code, DEAR.code]


def test_invalid_codes_are_kept_with_their_reason_and_pay_for_nothing() -> None:
    rec = lane()
    bad = Scan.of("4006381333932", 1.0)  # check digit wrong
    assert bad.key is None and bad.error and "check digit" in bad.error
    rec.add_scan(bad)
    alerts = rec.add_item(item(1, 2.0, CHEAP.code))
    assert [c.alert.type for c in alerts] == ["unscanned_item"]
    outcome, _ = rec.finish(4.0)
    assert outcome.scans[0].raw_code == "4006381333932" and not outcome.honest


def test_resolutions_are_checked() -> None:
    rec = lane()
    alert = rec.add_item(item(1, 2.0, DEAR.code))[0].alert
    with pytest.raises(ReconcileError, match="not one of"):
        rec.resolve(alert.alert_id, "ignored", 3.0)
    with pytest.raises(ReconcileError, match="needs a reason"):
        rec.resolve(alert.alert_id, "supervisor_override", 3.0, reason=" ")
    done = rec.resolve(alert.alert_id, "supervisor_override", 3.0, reason="price check")
    assert done.status == "resolved" and done.reason == "price check"
    with pytest.raises(ReconcileError, match="already resolved"):
        rec.resolve(alert.alert_id, "rescanned", 3.5)
    rec.finish(5.0)
    with pytest.raises(ReconcileError, match="has ended"):
        rec.add_item(item(2, 6.0, CHEAP.code))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6).flatmap(lambda n: st.lists(st.floats(0, 10), min_size=n * n, max_size=n * n))
)
def test_hungarian_finds_the_minimum(values: list[float]) -> None:
    n = int(len(values) ** 0.5)
    cost = np.array(values).reshape(n, n)
    assignment = hungarian(cost)
    assert sorted(assignment.tolist()) == list(range(n))
    best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(n)))
    assert sum(cost[i, assignment[i]] for i in range(n)) == pytest.approx(best)


def test_pairs_are_made_only_when_cheaper_than_leaving_both_alone() -> None:
    cost = np.array([[0.5, 9.0], [9.0, 2.5], [1e9, 1e9]])
    assert match_with_unmatched(cost, unmatched=1.0) == [(0, 0)]
    assert match_with_unmatched(cost, unmatched=2.0) == [(0, 0), (1, 1)]


def test_value_at_risk_is_never_negative_and_unknown_for_unweighed_produce() -> None:
    rec = lane()
    rec.add_scan(Scan.of(DEAR.display_code, 1.0))
    dearer_code = rec.add_item(item(1, 2.0, CHEAP.code))  # paid more than it was worth
    assert dearer_code[0].alert.type == "switch"
    assert (dearer_code[0].alert.value_minor, dearer_code[0].alert.severity) == (0, "low")
    fruit = PRODUCE[-1]
    assert fruit.sold_by == SoldBy.weight
    unscanned = rec.add_item(item(2, 9.0, fruit.code))  # no scale weighed it
    assert unscanned[0].alert.type == "unscanned_item"
    assert unscanned[0].alert.value_minor is None  # not its price per kg
    assert CATALOG.value_minor(fruit.code, 250) == round(fruit.price_minor / 4)
    assert CATALOG.value_minor(DEAR.code, 250) == DEAR.price_minor  # sold by the item


def test_a_loss_from_before_the_transaction_is_no_evidence_for_its_scans() -> None:
    rec = TransactionReconciler("tx-2", CATALOG, T1, T2, started_s=100.0)
    scan = Scan.of(OTHER.display_code, 101.0)
    rec.add_scan(scan)
    assert rec.add_lost(90.0) == []  # the last transaction's item, reported late
    assert rec.tick(110.0) == [] and rec.quiet == {scan.event_id}
    assert [c.alert.type for c in rec.add_lost(100.5)] == ["scan_without_item"]


def test_a_crop_the_camera_could_not_name_teaches_nothing_when_a_scan_went_unseen() -> None:
    """Two scans, one item seen that the camera cannot name: which scan it was is a guess,
    so its crop is not sent as an honest, labelled sample (with both items seen it is)."""
    from checkout_node.messages import StreamClock, sample_messages

    def unnamed(track: int, crossed: float) -> SeenItem:
        return SeenItem(track, crossed, crossed - 2.0, None, "unknown", 0.3, (), b"\xff\xd8")

    clock = StreamClock.now()
    guessed = lane()
    guessed.add_scan(Scan.of(CHEAP.display_code, 1.0))
    guessed.add_scan(Scan.of(OTHER.display_code, 1.5))
    guessed.add_item(unnamed(1, 2.0))
    outcome, _ = guessed.finish(14.0)
    assert outcome.honest and len(outcome.unseen_scans) == 1
    assert [s.reason for s in sample_messages("lane-1", outcome, clock)] == []
    both = lane()
    both.add_scan(Scan.of(CHEAP.display_code, 1.0))
    both.add_item(unnamed(1, 2.0))
    both.add_scan(Scan.of(OTHER.display_code, 4.0))
    both.add_item(unnamed(2, 5.0))
    outcome, _ = both.finish(14.0)
    assert outcome.honest and outcome.unseen_scans == []
    samples = sample_messages("lane-1", outcome, clock)
    assert [(s.reason, s.code) for s in samples] == [("honest", CHEAP.code), ("honest", OTHER.code)]


def produce_seen(track: int, crossed: float, candidates: list[tuple[str, float]]) -> SeenItem:
    """A produce item named "of interest" (below T1) with the camera's candidates."""
    code, score = candidates[0]
    return SeenItem(track, crossed, crossed - 2.0, code, "of_interest", score, tuple(candidates))


def test_a_plu_keyed_off_the_pick_list_is_a_switch_when_the_camera_is_sure_of_a_dearer_one() -> (
    None
):
    by_weight = [p for p in PRODUCE if p.sold_by == SoldBy.weight]  # prices per kg: comparable
    cheap, dear = by_weight[0], by_weight[-1]
    look_alikes = [p.code for p in PRODUCE if p.code not in (cheap.code, dear.code)]
    # The camera is sure (0.90 against 0.70 and below) of the dearer fruit; the cheap PLU keyed
    # is not on its list of four.
    sure = [(dear.code, 0.90), *((code, 0.70 - 0.01 * n) for n, code in enumerate(look_alikes))]
    rec = lane()
    rec.add_scan(Scan.of(cheap.display_code, 1.0, source="keypad", weight_g=500))
    raised = rec.add_item(produce_seen(1, 2.0, sure[:10]))
    assert [(c.alert.type, c.alert.subtype) for c in raised] == [("switch", "plu")]
    assert (raised[0].alert.seen_code, raised[0].alert.scanned_code) == (dear.code, cheap.code)

    # The keyed PLU on the list, the camera unsure, or the keyed PLU the dearer: no alert.
    on_list = [(dear.code, 0.90), (cheap.code, 0.85), *sure[1:8]]
    unsure = [(dear.code, 0.72), *((c, 0.71) for c in look_alikes[:9])]
    dearer_keyed = [(cheap.code, 0.90), *sure[1:10]]
    for candidates, keyed in ((on_list, cheap), (unsure, cheap), (dearer_keyed, dear)):
        rec = lane()
        rec.add_scan(Scan.of(keyed.display_code, 1.0, source="keypad", weight_g=500))
        assert rec.add_item(produce_seen(1, 2.0, candidates)) == [], (candidates[0], keyed.code)
        assert rec.finish(9.0)[0].honest

    # The PLU keyed is one the lane screen offered in this transaction (the cashier tapped it),
    # or a price per piece against the camera's price per kg with nothing weighed: neither
    # says "switch".
    rec = lane()
    rec.offered_plus.add(cheap.code)
    rec.add_scan(Scan.of(cheap.display_code, 1.0, source="keypad", weight_g=500))
    assert rec.add_item(produce_seen(1, 2.0, sure[:10])) == []
    per_piece = next(
        p for p in PRODUCE if p.sold_by != SoldBy.weight and p.price_minor < dear.price_minor
    )
    without_it = [(dear.code, 0.9), *[(c, v) for c, v in sure[1:] if c != per_piece.code][:8]]
    rec = lane()
    rec.add_scan(Scan.of(per_piece.display_code, 1.0, source="keypad"))  # nothing weighed
    assert rec.add_item(produce_seen(1, 2.0, without_it)) == []
    # Weighed, the per-kg fruit seen is worth more than the piece keyed: a switch.
    rec = lane()
    rec.add_scan(Scan.of(per_piece.display_code, 1.0, source="keypad", weight_g=2000))
    assert dear.price_minor * 2 > per_piece.price_minor
    raised = rec.add_item(produce_seen(1, 2.0, without_it))
    assert [(c.alert.type, c.alert.subtype) for c in raised] == [("switch", "plu")]
