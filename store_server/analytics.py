"""Numbers for the manager: where and when alerts happen, how they end, what they saved.

- loss prevented: the value of alerted items that were then paid for or left in the store
  (the cashier's "rescanned" or "customer declined", or a manager's review "recovered");
- false-alarm rate: among alerts someone closed, the share that was nothing (the cashier's
  "not an item", or a manager's review "false alarm"). Alerts the lane withdrew itself (a late
  scan, the final check) are not counted as closed by anyone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from product_db.models import as_utc
from store_server.models import AlertRecord, TransactionRecord

PREVENTED_RESOLUTIONS = ("rescanned", "customer_declined")
FALSE_ALARM_RESOLUTIONS = ("not_an_item",)


@dataclass
class Analytics:
    since: datetime
    alerts: int = 0
    transactions: int = 0
    per_lane: Counter[str] = field(default_factory=Counter)
    per_hour: Counter[int] = field(default_factory=Counter)
    per_type: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    loss_prevented_minor: int = 0
    closed: int = 0
    false_alarms: int = 0

    @property
    def false_alarm_rate(self) -> float | None:
        return self.false_alarms / self.closed if self.closed else None

    @property
    def alerts_per_100_transactions(self) -> float | None:
        return 100 * self.alerts / self.transactions if self.transactions else None


def outcome_of(alert: AlertRecord) -> str:
    """One word for how an alert ended, the manager's review first."""
    if alert.review:
        return alert.review
    if alert.status == "resolved" and alert.resolution:
        return alert.resolution
    return alert.status  # open or withdrawn


def compute(
    engine: Engine, days: int, now: datetime | None = None, zone: tzinfo = timezone.utc
) -> Analytics:
    """The figures of the last ``days``; alerts per hour of the day on ``zone``'s clock."""
    since = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    result = Analytics(since=since)
    with Session(engine) as session:
        alerts = session.exec(select(AlertRecord).where(col(AlertRecord.raised_at) >= since))
        for alert in alerts:
            result.alerts += 1
            result.per_lane[alert.lane_id] += 1
            result.per_hour[as_utc(alert.raised_at).astimezone(zone).hour] += 1
            label = alert.alert_type + (f" ({alert.subtype})" if alert.subtype else "")
            result.per_type[label] += 1
            outcome = outcome_of(alert)
            result.outcomes[outcome] += 1
            if outcome in (*PREVENTED_RESOLUTIONS, "recovered") and alert.value_minor:
                result.loss_prevented_minor += max(alert.value_minor, 0)
            if alert.status == "resolved" or alert.review:
                result.closed += 1
                result.false_alarms += outcome in (*FALSE_ALARM_RESOLUTIONS, "false_alarm")
        result.transactions = len(
            session.exec(
                select(TransactionRecord.id).where(col(TransactionRecord.ended_at) >= since)
            ).all()
        )
    return result
