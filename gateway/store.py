"""Durable store for one checkpoint's gateway: SQLite in WAL mode, synchronous=FULL.

Every event is kept exactly once under its dedup key (checkpoint, kiosk, epoch, seq); counters
per checkpoint are updated in the same transaction as the insert, so they never drift from the
events and reading them never scans the events table.
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    checkpoint TEXT NOT NULL, kiosk TEXT NOT NULL, epoch TEXT NOT NULL, seq INTEGER NOT NULL,
    type TEXT NOT NULL, result TEXT, lane TEXT NOT NULL, dir TEXT NOT NULL,
    ts_ms INTEGER NOT NULL, ts_source TEXT NOT NULL, received_ms INTEGER NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (checkpoint, kiosk, epoch, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (
    checkpoint TEXT NOT NULL, type TEXT NOT NULL, result TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (checkpoint, type, result)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kiosks (
    checkpoint TEXT NOT NULL, kiosk TEXT NOT NULL, state TEXT NOT NULL, fw TEXT, board TEXT,
    epoch TEXT, boot INTEGER, config_hash TEXT, changed_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,
    telemetry TEXT,
    PRIMARY KEY (checkpoint, kiosk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rejects (reason TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS stats (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Accepted:
    """A message that passed protocol validation."""
    checkpoint: str
    kiosk: str
    channel: str
    body: dict[str, Any]
    received_ms: int


@dataclass(frozen=True)
class Rejected:
    reason: str


def connect(path: Path | str, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db = connect(self.path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def write_batch(self, items: Iterable[Accepted | Rejected]) -> dict[str, int]:
        """Apply a batch in one transaction; returns what happened (stored, duplicates, ...)."""
        outcome = {"stored": 0, "duplicates": 0, "status": 0, "telemetry": 0, "rejected": 0, "other": 0}
        with self._lock, self._db:
            for item in items:
                if isinstance(item, Rejected):
                    self._bump("rejects", "reason", item.reason)
                    outcome["rejected"] += 1
                elif item.channel == "event":
                    outcome["stored" if self._insert_event(item) else "duplicates"] += 1
                elif item.channel == "status":
                    self._upsert_status(item)
                    outcome["status"] += 1
                elif item.channel == "telemetry":
                    self._telemetry(item)
                    outcome["telemetry"] += 1
                else:
                    outcome["other"] += 1
            if outcome["duplicates"]:
                self._bump("stats", "name", "duplicates", outcome["duplicates"])
        return outcome

    def _bump(self, table: str, key: str, value: str, n: int = 1) -> None:
        self._db.execute(f"INSERT INTO {table} ({key}, n) VALUES (?, ?) "
                         f"ON CONFLICT({key}) DO UPDATE SET n = n + excluded.n", (value, n))

    def _insert_event(self, item: Accepted) -> bool:
        body = item.body
        ts = body["ts"]
        cur = self._db.execute(
            "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (item.checkpoint, item.kiosk, body["epoch"], body["seq"], body["type"], body.get("result"),
             body["lane"], body["dir"], ts if ts is not None else item.received_ms,
             "kiosk" if ts is not None else "received", item.received_ms,
             json.dumps(body, separators=(",", ":"))))
        if cur.rowcount != 1:
            return False
        self._db.execute(
            "INSERT INTO counts VALUES (?,?,?,1) ON CONFLICT(checkpoint, type, result) DO UPDATE SET n = n + 1",
            (item.checkpoint, body["type"], body.get("result") or ""))
        self._seen(item)
        return True

    def _seen(self, item: Accepted) -> None:
        self._db.execute("UPDATE kiosks SET last_seen_ms = max(last_seen_ms, ?) WHERE checkpoint=? AND kiosk=?",
                         (item.received_ms, item.checkpoint, item.kiosk))

    def _upsert_status(self, item: Accepted) -> None:
        b = item.body
        self._db.execute(
            "INSERT INTO kiosks (checkpoint, kiosk, state, fw, board, epoch, boot, config_hash, changed_ms,"
            " last_seen_ms) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(checkpoint, kiosk) DO UPDATE SET"
            " state=excluded.state, fw=coalesce(excluded.fw, fw), board=coalesce(excluded.board, board),"
            " epoch=coalesce(excluded.epoch, epoch), boot=coalesce(excluded.boot, boot),"
            " config_hash=coalesce(excluded.config_hash, config_hash), changed_ms=excluded.changed_ms,"
            " last_seen_ms=max(last_seen_ms, excluded.last_seen_ms)",
            (item.checkpoint, item.kiosk, b["state"], b.get("fw"), b.get("board"), b.get("epoch"), b.get("boot"),
             b.get("config_hash"), item.received_ms, item.received_ms))

    def _telemetry(self, item: Accepted) -> None:
        self._db.execute("UPDATE kiosks SET telemetry=? WHERE checkpoint=? AND kiosk=?",
                         (json.dumps(item.body), item.checkpoint, item.kiosk))
        self._seen(item)


class Reader:
    """Read-only queries (HTTP handlers, CLI, tests); safe beside the writer thanks to WAL."""

    def __init__(self, path: Path | str) -> None:
        self._db = connect(path, readonly=True)
        self._db.row_factory = sqlite3.Row

    def close(self) -> None:
        self._db.close()

    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for row in self._db.execute("SELECT checkpoint, type, result, n FROM counts ORDER BY 1, 2, 3"):
            cp = out.setdefault(row["checkpoint"], {"events": 0, "screened": 0, "results": {}, "types": {}})
            cp["events"] += row["n"]
            cp["types"][row["type"]] = cp["types"].get(row["type"], 0) + row["n"]
            if row["type"] == "screening":
                cp["screened"] += row["n"]
                cp["results"][row["result"]] = row["n"]
        for row in self._db.execute("SELECT checkpoint, state, count(*) AS n FROM kiosks GROUP BY 1, 2"):
            cp = out.setdefault(row["checkpoint"], {"events": 0, "screened": 0, "results": {}, "types": {}})
            cp.setdefault("kiosks", {})[row["state"]] = row["n"]
        return out

    def kiosks(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT checkpoint, kiosk, state, fw, board, epoch, boot, config_hash,"
                                " changed_ms, last_seen_ms FROM kiosks ORDER BY 1, 2")
        return [dict(r) for r in rows]

    def rejects(self) -> dict[str, int]:
        return {r["reason"]: r["n"] for r in self._db.execute("SELECT reason, n FROM rejects")}

    def stat(self, name: str) -> int:
        row = self._db.execute("SELECT n FROM stats WHERE name=?", (name,)).fetchone()
        return int(row["n"]) if row else 0

    def event_keys(self) -> list[tuple[str, str, str, int]]:
        rows = self._db.execute("SELECT checkpoint, kiosk, epoch, seq FROM events ORDER BY 1, 2, 3, 4")
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def event_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])
