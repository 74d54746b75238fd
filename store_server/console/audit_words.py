"""The audit log in words: each entry as a sentence a store manager or an auditor reads,
instead of an action key and a JSON object.

An action this module does not know yet is still shown whole: its details as "name: value"
phrases, never dropped."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from product_db.money import format_price
from store_server.products import ProductView

REVIEW_WORDS = {
    "confirmed_loss": "confirmed loss",
    "recovered": "recovered",
    "false_alarm": "false alarm",
}


def audit_sentence(
    action: str,
    target: str,
    detail: Mapping[str, Any] | None,
    currency: str,
    products: Mapping[str, ProductView],
) -> str:
    """What the entry says happened, in a sentence."""
    detail = detail or {}
    words = _Words(target, detail, currency, products)
    describe = SENTENCES.get(action)
    if describe is None:
        return words.fallback(action)
    return describe(words)


class _Words:
    def __init__(
        self,
        target: str,
        detail: Mapping[str, Any],
        currency: str,
        products: Mapping[str, ProductView],
    ) -> None:
        self.target, self.detail, self.currency, self.products = target, detail, currency, products

    def get(self, key: str, default: Any = None) -> Any:
        return self.detail.get(key, default)

    def product(self, code: str | None = None) -> str:
        """A product as people name it: "Bananas (4011)"; the code alone when unknown."""
        code = code or self.target
        view = self.products.get(code)
        if view is None or view.name is None:
            return code
        return f"{view.name} ({view.display_code or code})"

    def money(self, minor: Any) -> str:
        if not isinstance(minor, int):
            return "unknown"
        return f"{format_price(minor, self.currency)} {self.currency}"

    def change(self, key: str, show: Callable[[Any], str]) -> str | None:
        """ "from A to B" for a [before, after] detail that changed; None when it did not."""
        value = self.get(key)
        if isinstance(value, list) and len(value) == 2:
            before, after = value
            return None if before == after else f"from {show(before)} to {show(after)}"
        return None if value is None else f"to {show(value)}"

    def fallback(self, action: str) -> str:
        phrases = [
            f"{key.replace('_', ' ')}: {_plain(value)}" for key, value in self.detail.items()
        ]
        subject = f" {self.target}" if self.target else ""
        return f"{action.replace('.', ' ').replace('_', ' ').capitalize()}{subject}" + (
            f" ({'; '.join(phrases)})" if phrases else ""
        )


def _plain(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value[:10]) + (" …" if len(value) > 10 else "")
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _review(w: _Words) -> str:
    review = REVIEW_WORDS.get(str(w.get("review")), str(w.get("review")))
    sentence = f"Reviewed alert {w.target} as {review}"
    if w.get("note"):
        sentence += f", noting “{w.get('note')}”"
    if w.get("against_the_lane"):
        sentence += f", confirmed against the lane: {w.get('against_the_lane')}"
    return sentence


def _catalog_edit(w: _Words) -> str:
    changes = []
    price = w.change("price_minor", w.money)
    if price:
        changes.append(f"price {price}")
    on_sale = w.get("active")
    if isinstance(on_sale, list) and len(on_sale) == 2 and on_sale[0] != on_sale[1]:
        changes.append("back on sale" if on_sale[1] else "taken off sale")
    what = ", ".join(changes) or "saved with no change"
    return f"Changed {w.product()}: {what}"


def _evidence_deleted(w: _Words) -> str:
    if w.get("days") is None:
        return f"Deleted {w.get('clips', 0)} clips that belonged to no alert"
    return (
        f"Deleted the evidence of {w.target} older than {w.get('days')} days "
        f"({w.get('crops', 0)} pictures, {w.get('clips', 0)} clips)"
    )


def _box_decided(w: _Words) -> str:
    label = str(w.get("label") or "object").replace("_", " ")
    answer = "a" if w.get("verdict") == "yes" else "no"
    return f"Said there is {answer} {label} in {w.target} (lane {w.get('lane')})"


SENTENCES: dict[str, Callable[[_Words], str]] = {
    "alert.review": _review,
    "catalog.edit": _catalog_edit,
    "catalog.import": lambda w: f"Imported the catalog: {w.get('summary', w.target)}",
    "catalog.price_override": lambda w: (
        f"HQ set the price of {w.product()} to {w.money(w.get('price_minor'))}"
    ),
    "bundle.published": lambda w: f"Published model bundle {w.target} to the lanes",
    "evidence.deleted": _evidence_deleted,
    "samples.deleted": lambda w: (
        f"Deleted {w.target} of training pictures older than {w.get('days')} days"
    ),
    "gallery.withdraw": lambda w: (
        f"Withdrew what the lanes learned of {w.product(w.get('code') or w.target)}"
    ),
    "lane.enrolled": lambda w: f"Lane {w.target} enrolled",
    "lane.retired": lambda w: f"Retired lane {w.target}",
    "lane.token_created": lambda w: f"Created a one-time enrolment token for lane {w.target}",
    "enrolment.refused": lambda w: f"Refused a wrong enrolment token from {w.target or 'a lane'}",
    "login": lambda w: "Signed in",
    "logout": lambda w: "Signed out",
    "login.failed": lambda w: "Failed to sign in: wrong user name or password",
    "login.throttled": lambda w: (
        f"Sign-in refused for {w.get('wait_s')} s after repeated wrong passwords"
    ),
    "rollout.started": lambda w: (
        f"Started rolling out bundle {w.target} in {len(w.get('stages') or []) or 'its'} stages"
    ),
    "rollout.promoted": lambda w: f"Moved the rollout of {w.target} on to stage {w.get('stage')}",
    "rollout.paused": lambda w: f"Paused the rollout of {w.target}",
    "rollout.rolled_back": lambda w: (
        f"Rolled back bundle {w.target}" + (f": {w.get('reason')}" if w.get("reason") else "")
    ),
    "sample.teacher": lambda w: (
        f"The teacher model judged {w.target}: {w.get('labelled', 0)} labelled, "
        f"{w.get('proposed', 0)} proposed to a manager"
    ),
    "user.created": lambda w: f"Created user {w.target} ({_role(w.get('role'))})",
    "frames.labelled": lambda w: (
        f"The teacher detector judged the unsure boxes of {w.target}: {w.get('yes', 0)} "
        f"objects, {w.get('no', 0)} nothing there, {w.get('undecided', 0)} left to a person"
    ),
    "frame.box_decided": _box_decided,
}


def _role(role: Any) -> str:
    return {"manager": "store manager", "it_admin": "IT admin"}.get(str(role), str(role))
