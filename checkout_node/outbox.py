"""The lane's outbox: a durable local queue of everything meant for the store server.

SQLite in WAL mode with full sync: a message put here survives a crash or a power cut, and the
lane keeps working for days with the store server down. Each message has the id the server
deduplicates on, so one that is delivered but whose reply was lost is stored once.

Disk cap, and what goes when it is reached (in this order):
  1. heartbeats: only the newest undelivered heartbeat is ever kept (each replaces the last);
  2. detection frames, oldest first;
  3. training samples, oldest first;
  4. alert clips, oldest first (the alert itself, with its crop, stays);
  never alerts or transactions: when they alone fill the cap the outbox grows past it and says
  so (``over_cap``), rather than lose a record of a loss.
Messages the server refuses as invalid (4xx) move to a dead-letter table, kept for inspection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from laneguard.files import private_dir, private_file
from product_db.errors import LaneGuardError

KINDS = ("alert", "transaction", "clip", "heartbeat", "sample", "frame")
# A clip goes after the alert it shows (a manager sees the alert first) and before heartbeats;
# detection frames last (the largest, and what the lane can best do without).
PRIORITY = {"alert": 0, "transaction": 1, "clip": 2, "heartbeat": 3, "sample": 4, "frame": 5}
NEVER_DROPPED = ("alert", "transaction")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (priority, seq);
CREATE TABLE IF NOT EXISTS dead_letter (
    message_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL,
    error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS delivered (
    message_id TEXT PRIMARY KEY,
    delivered_at REAL NOT NULL
);
"""


class OutboxError(LaneGuardError, ValueError):
    """A message the outbox cannot take (unknown kind, empty id)."""


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    message_id: str
    kind: str
    payload: bytes
    attempts: int


@dataclass
class Outbox:
    path: Path
    cap_bytes: int = 2 * 1024**3
    remember_delivered: int = 100_000  # ids kept to refuse a re-put of a delivered message

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        private_dir(self.path.parent)
        private_file(self.path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self.dropped = {kind: 0 for kind in KINDS}

    # -- putting ----------------------------------------------------------------------------
    def put(self, kind: str, message_id: str, payload: bytes) -> bool:
        """Queue one message; False when that id is already queued or was delivered."""
        return self.put_many([(kind, message_id, payload)]) == 1

    def put_many(self, messages: Iterable[tuple[str, str, bytes]]) -> int:
        """Queue several messages in one durable write; returns how many were new."""
        rows = []
        now = time.time()
        for kind, message_id, payload in messages:
            if kind not in PRIORITY:
                raise OutboxError(f"unknown message kind {kind!r}; one of {', '.join(KINDS)}")
            if not message_id:
                raise OutboxError("a message needs a non-empty message_id")
            rows.append((message_id, kind, PRIORITY[kind], payload, len(payload), now))
        added = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    if self._db.execute(
                        "SELECT 1 FROM delivered WHERE message_id = ?", (row[0],)
                    ).fetchone():
                        continue
                    if row[1] == "heartbeat":  # only the newest heartbeat matters
                        removed = self._db.execute("DELETE FROM outbox WHERE kind = 'heartbeat'")
                        self.dropped["heartbeat"] += removed.rowcount
                    cursor = self._db.execute(
                        "INSERT OR IGNORE INTO outbox "
                        "(message_id, kind, priority, payload, size, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        row,
                    )
                    added += cursor.rowcount
                self._enforce_cap()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return added

    def _enforce_cap(self) -> None:
        total = self._total_bytes()
        while total > self.cap_bytes:
            victim = self._db.execute(
                "SELECT seq, kind, size FROM outbox WHERE kind NOT IN ('alert', 'transaction') "
                "ORDER BY priority DESC, seq ASC LIMIT 1"
            ).fetchone()
            if victim is None:
                return  # only alerts and transactions left: keep them all (over_cap)
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (victim[0],))
            self.dropped[victim[1]] += 1
            total -= victim[2]

    # -- delivering -------------------------------------------------------------------------
    def due(
        self, limit: int = 100, now: float | None = None, max_bytes: int | None = None
    ) -> list[Entry]:
        """Messages ready to send, most important first, oldest first within a kind; at most
        ``max_bytes`` of payload (but always the first one), so clips make batches the server
        takes."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, message_id, kind, payload, attempts, size FROM outbox "
                "WHERE next_attempt_at <= ? ORDER BY priority, seq LIMIT ?",
                (now, limit),
            ).fetchall()
        entries: list[Entry] = []
        total = 0
        for *row, size in rows:
            total += int(size)
            if entries and max_bytes is not None and total > max_bytes:
                break
            entries.append(Entry(*row))
        return entries

    def delivered(self, message_ids: Iterable[str]) -> None:
        now = time.time()
        ids = list(message_ids)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM outbox WHERE message_id = ?", [(i,) for i in ids])
            self._db.executemany(
                "INSERT OR REPLACE INTO delivered (message_id, delivered_at) VALUES (?, ?)",
                [(i, now) for i in ids],
            )
            self._db.execute(
                "DELETE FROM delivered WHERE message_id IN (SELECT message_id FROM delivered "
                "ORDER BY delivered_at DESC LIMIT -1 OFFSET ?)",
                (self.remember_delivered,),
            )
            self._db.execute("COMMIT")

    def retry_later(self, message_ids: Iterable[str], error: str, delay_s: float) -> None:
        """Not delivered this time (server down, timeout, 5xx): try again after ``delay_s``."""
        when = time.time() + delay_s
        with self._lock:
            self._db.executemany(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? "
                "WHERE message_id = ?",
                [(when, error[:500], i) for i in message_ids],
            )

    def reject(self, message_id: str, error: str) -> None:
        """The server refused the message as invalid: keep it aside, stop retrying it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT OR REPLACE INTO dead_letter (message_id, kind, payload, error, failed_at) "
                "SELECT message_id, kind, payload, ?, ? FROM outbox WHERE message_id = ?",
                (error[:2000], time.time(), message_id),
            )
            self._db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
            self._db.execute("COMMIT")

    # -- state ------------------------------------------------------------------------------
    def _total_bytes(self) -> int:
        return int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM outbox").fetchone()[0])

    def depth(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute("SELECT kind, COUNT(*) FROM outbox GROUP BY kind").fetchall()
        counts = {kind: 0 for kind in KINDS}
        counts.update({kind: int(n) for kind, n in rows})
        return counts

    def oldest_age_s(self) -> float:
        """Seconds the oldest waiting message has waited; 0 when the outbox is empty."""
        with self._lock:
            oldest = self._db.execute("SELECT MIN(created_at) FROM outbox").fetchone()[0]
        return 0.0 if oldest is None else max(0.0, time.time() - float(oldest))

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._total_bytes()

    @property
    def over_cap(self) -> bool:
        return self.size_bytes > self.cap_bytes

    def dead_letters(self) -> list[tuple[str, str, str]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT message_id, kind, error FROM dead_letter ORDER BY failed_at"
            ).fetchall()
        return [(str(a), str(b), str(c)) for a, b, c in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
