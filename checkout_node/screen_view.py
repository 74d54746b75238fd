"""What the cashier's lane screen is sent: items, scans and alerts as the screen shows them.

The screen is a page that renders JSON as it comes (checkout_node/web/static); everything it
shows is decided here, on the lane, so the page holds no catalog and no rules: a product's
name and price in the catalog's currency (per kg for produce sold by weight), what the cashier
is asked to do about each kind of alert, whether its crop and clip can be fetched.
"""

from __future__ import annotations

from typing import Any

from checkout_node.catalog import LaneCatalog
from checkout_node.evidence_cache import EvidenceCache
from checkout_node.reconcile.model import Alert, Scan, SeenItem
from checkout_node.reconcile.reconciler import TransactionReconciler
from product_db.models import SoldBy

INSTRUCTIONS = {
    "unscanned_item": "This item was not scanned. Please scan it.",
    "quantity_mismatch": "More of this item than the quantity keyed. Please check the quantity.",
    "switch": "The scanned code does not match the item. Please check and rescan.",
    "scan_without_item": "An item was scanned, then lost from view. Check it went into the bag.",
}


class ScreenView:
    """Turns the lane's items, scans and alerts into the screen's JSON."""

    def __init__(
        self, catalog: LaneCatalog, evidence: EvidenceCache, customer_prompt_s: float = 0.0
    ) -> None:
        self.catalog = catalog
        self.evidence = evidence
        # How long the customer's own prompt shows before the cashier's alert (unscanned only).
        self.customer_prompt_s = customer_prompt_s

    def product(self, code: str | None) -> dict[str, Any]:
        product = self.catalog.lookup(code)
        if product is None:
            return {"name": None, "price_minor": None}
        return {
            "name": product.name,
            "price_minor": product.price_minor,
            "currency": product.currency,
            "per_kg": product.sold_by == SoldBy.weight,
        }

    def item(self, item: SeenItem) -> dict[str, Any]:
        return {
            "track_id": item.track_id,
            "code": item.code,
            "band": item.band,
            "score": round(item.score, 3),
            "crossed_s": round(item.crossed_s, 3),
            **self.product(item.code),
        }

    def scan(self, scan: Scan) -> dict[str, Any]:
        return {**scan.to_json(), **self.product(scan.key)}

    def alert(self, alert: Alert) -> dict[str, Any]:
        data = alert.to_json()
        data["seen"] = self.product(alert.seen_code)
        data["scanned"] = self.product(alert.scanned_code)
        data["instruction"] = INSTRUCTIONS[alert.type]
        data["has_evidence"] = self.evidence.crop(alert.alert_id) is not None
        data["has_clip"] = self.evidence.clip(alert.alert_id) is not None
        data["customer_prompt_s"] = (
            self.customer_prompt_s if alert.type == "unscanned_item" else 0.0
        )
        return data

    def transaction(self, tx: TransactionReconciler) -> dict[str, Any]:
        """A transaction under way, for a screen that (re)connects."""
        return {
            "transaction_id": tx.transaction_id,
            "seen": [self.item(i) for i in tx.items],
            "scanned": [self.scan(s) for s in tx.scans],
            "alerts": [self.alert(a) for a in tx.alerts],
        }
