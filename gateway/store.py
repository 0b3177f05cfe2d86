"""Durable store for one checkpoint's gateway: the storage interface, and SQLite behind it.

`Storage` is the one interface the rest of the gateway uses (ingest, timers, HTTP, reports);
`SQLiteStore` is the embedded implementation: WAL, synchronous=FULL (an acknowledged event
survives a power loss, not only a crash), one transaction per batch, secure_delete for purged
rows, and schema versions in `PRAGMA user_version` with migrations that upgrade an old file in
place. A PostgreSQL store (city level) implements the same methods; the SQL here sticks to what
both speak except the upserts' `excluded.` form, which PostgreSQL shares.

Every event is kept exactly once under its dedup key (checkpoint, kiosk, epoch, seq). Counters
(per checkpoint; per checkpoint/day/hour/kiosk/lane/dir; per kiosk epoch) change in the same
transaction as the insert, so they never drift from the events and reading them never scans
the events table. Alerts that an event raises are inserted in that transaction too, under a
deterministic id, so a redelivered event cannot raise its alert twice.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

from gateway.clock import LocalTime
from kiosk import protocol

# ---- schema --------------------------------------------------------------------------------

# Version 1, exactly as the foundation shipped it (files made by it carry user_version 0).
SCHEMA_V1 = """
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
SCHEMA = SCHEMA_V1  # the foundation's name for it

SCHEMA_V2 = """
ALTER TABLE events ADD COLUMN holder_ref TEXT;
ALTER TABLE events ADD COLUMN code_kind TEXT;
ALTER TABLE events ADD COLUMN code_color TEXT;
ALTER TABLE events ADD COLUMN temp_c REAL;
UPDATE events SET
    holder_ref = CASE WHEN type IN ('screening','scan','manual') AND json_type(body,'$.code.holder_ref')='text'
                      THEN json_extract(body,'$.code.holder_ref') END,
    code_kind = CASE WHEN type IN ('screening','scan','manual') AND json_type(body,'$.code.kind')='text'
                     THEN json_extract(body,'$.code.kind') END,
    code_color = CASE WHEN type IN ('screening','scan','manual') AND json_type(body,'$.code.color')='text'
                      THEN json_extract(body,'$.code.color') END,
    temp_c = CASE WHEN json_type(body,'$.temp_c') IN ('real','integer') THEN json_extract(body,'$.temp_c') END;
CREATE INDEX events_holder ON events(holder_ref, ts_ms) WHERE holder_ref IS NOT NULL;
CREATE INDEX events_place ON events(checkpoint, kiosk, ts_ms);
CREATE INDEX events_ts ON events(ts_ms);
ALTER TABLE kiosks ADD COLUMN last_heartbeat_ms INTEGER;
ALTER TABLE kiosks ADD COLUMN offline_source TEXT;
CREATE TABLE agg (
    checkpoint TEXT NOT NULL, day TEXT NOT NULL, hour INTEGER NOT NULL, kiosk TEXT NOT NULL,
    lane TEXT NOT NULL, dir TEXT NOT NULL, metric TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (checkpoint, day, hour, kiosk, lane, dir, metric)
) WITHOUT ROWID;
CREATE TABLE delivery (
    checkpoint TEXT NOT NULL, kiosk TEXT NOT NULL, epoch TEXT NOT NULL,
    min_seq INTEGER NOT NULL, max_seq INTEGER NOT NULL, received INTEGER NOT NULL,
    lost_reported INTEGER NOT NULL DEFAULT 0, late INTEGER NOT NULL DEFAULT 0,
    first_ts_ms INTEGER NOT NULL, last_ts_ms INTEGER NOT NULL,
    first_received_ms INTEGER NOT NULL, last_received_ms INTEGER NOT NULL,
    PRIMARY KEY (checkpoint, kiosk, epoch)
) WITHOUT ROWID;
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT, received_ms INTEGER NOT NULL, topic TEXT NOT NULL,
    reason TEXT NOT NULL, detail TEXT NOT NULL, size INTEGER NOT NULL, payload BLOB
);
CREATE TABLE kiosk_states (
    checkpoint TEXT NOT NULL, kiosk TEXT NOT NULL, ts_ms INTEGER NOT NULL, state TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX kiosk_states_time ON kiosk_states(checkpoint, kiosk, ts_ms);
CREATE TABLE alerts (
    id TEXT PRIMARY KEY, checkpoint TEXT NOT NULL, kiosk TEXT, kind TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    raised_ms INTEGER NOT NULL, context TEXT NOT NULL, state TEXT NOT NULL,
    ack_by TEXT, ack_ms INTEGER, ack_note TEXT, resolved_by TEXT, resolved_ms INTEGER, resolve_note TEXT,
    notified_ms INTEGER, repeats INTEGER NOT NULL DEFAULT 0, published INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX alerts_open ON alerts(state, kind);
CREATE INDEX alerts_time ON alerts(checkpoint, ts_ms);
CREATE TABLE desired_config (
    checkpoint TEXT NOT NULL, kiosk TEXT NOT NULL, settings TEXT NOT NULL, hash TEXT NOT NULL,
    updated_ms INTEGER NOT NULL, updated_by TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (checkpoint, kiosk)
) WITHOUT ROWID;
CREATE TABLE config_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, checkpoint TEXT NOT NULL, kiosk TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    who TEXT NOT NULL, old TEXT, new TEXT NOT NULL
);
CREATE TABLE commands (
    id TEXT PRIMARY KEY, checkpoint TEXT NOT NULL, kiosk TEXT NOT NULL, name TEXT NOT NULL, args TEXT NOT NULL,
    issued_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, issued_by TEXT NOT NULL, state TEXT NOT NULL,
    ack_ok INTEGER, ack_detail TEXT, ack_ms INTEGER, published INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE reports (
    checkpoint TEXT NOT NULL, day TEXT NOT NULL, version INTEGER NOT NULL, issued_ms INTEGER NOT NULL,
    body TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (checkpoint, day, version)
) WITHOUT ROWID;
CREATE TABLE report_dirty (
    checkpoint TEXT NOT NULL, day TEXT NOT NULL, late INTEGER NOT NULL, PRIMARY KEY (checkpoint, day)
) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
SCHEMA_VERSION = 2

OPEN, ACKNOWLEDGED, RESOLVED = "open", "acknowledged", "resolved"
FAULT_ALERT = {"sensor": "sensor_fault", "air": "sensor_fault", "scanner": "device_fault",
               "flash": "device_fault", "display": "device_fault", "watchdog": "device_fault",
               "config": "config_fault", "records_full": "records_full"}  # link faults are reconnects: no alert
MANUAL_KIOSK = protocol.GATEWAY_ID  # manual screenings are events of the gateway's reserved id
MAX_SQL_INT = 2**63 - 1


class StoreError(RuntimeError):
    pass


# ---- what ingest hands over ------------------------------------------------------------------

@dataclass(frozen=True)
class Accepted:
    """A message that passed protocol validation."""
    checkpoint: str
    kiosk: str
    channel: str
    body: dict[str, Any]
    received_ms: int
    raw: str | None = None  # the payload text, when it is exactly `body` (saves re-encoding events)


@dataclass(frozen=True)
class Rejected:
    """A message that broke the contract. `payload` is None where it must never be kept."""
    reason: str
    detail: str = ""
    topic: str = ""
    payload: bytes | None = None
    received_ms: int = 0
    size: int = 0


@dataclass
class BatchResult:
    outcome: dict[str, int]
    alerts: list[dict[str, Any]] = field(default_factory=list)


class Storage(Protocol):
    """What the gateway needs from a store; SQLiteStore here, PostgreSQL at city level."""

    def write_batch(self, items: Iterable[Accepted | Rejected]) -> BatchResult: ...
    def record_manual(self, checkpoint: str, lane: str, direction: str, result: str, temp_c: float | None,
                      operator: str, ts_ms: int, now_ms: int, holder_ref: str | None = None,
                      color: str = "none", note: str = "", kiosk_hint: str | None = None) -> tuple[dict[str, Any], BatchResult]: ...
    def mark_silent_offline(self, now_ms: int, offline_after_ms: int) -> list[dict[str, Any]]: ...
    def raise_alert(self, alert_id: str, checkpoint: str, kiosk: str | None, kind: str, ts_ms: int,
                    now_ms: int, context: dict[str, Any]) -> dict[str, Any] | None: ...
    def set_alert_state(self, alert_id: str, state: str, who: str, note: str, now_ms: int) -> dict[str, Any]: ...
    def due_fever_repeats(self, now_ms: int, every_ms: int) -> list[dict[str, Any]]: ...
    def unpublished_alerts(self) -> list[dict[str, Any]]: ...
    def mark_published(self, table: str, key: dict[str, Any]) -> None: ...
    def set_desired_config(self, checkpoint: str, kiosk: str, settings: dict[str, Any], config_hash: str,
                           who: str, now_ms: int) -> dict[str, Any]: ...
    def desired_configs(self) -> list[dict[str, Any]]: ...
    def add_command(self, cmd: dict[str, Any], checkpoint: str, kiosk: str, who: str, now_ms: int) -> None: ...
    def expire_commands(self, now_ms: int) -> int: ...
    def save_report(self, checkpoint: str, day: str, body: dict[str, Any], now_ms: int) -> int: ...
    def purge(self, before_ms: int) -> dict[str, int]: ...
    def reader(self) -> "Queries": ...
    def close(self) -> None: ...


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def connect(path: Path | str, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None)
    else:
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _schema_version(db: sqlite3.Connection) -> int:
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    if version == 0 and db.execute("SELECT 1 FROM sqlite_master WHERE name='events'").fetchone():
        return 1  # the foundation's files carry no version
    return version


def migrate(db: sqlite3.Connection, local: LocalTime) -> tuple[int, int]:
    """Bring a file to SCHEMA_VERSION in place; each step is one transaction. -> (from, to)."""
    start = _schema_version(db)
    if start > SCHEMA_VERSION:
        raise StoreError(f"store schema v{start} is newer than this gateway (v{SCHEMA_VERSION}): refusing to touch it")
    version = start
    steps: dict[int, Callable[[sqlite3.Connection, LocalTime], None]] = {1: _to_v1, 2: _to_v2}
    while version < SCHEMA_VERSION:
        version += 1
        db.execute("BEGIN IMMEDIATE")
        try:
            steps[version](db, local)
            db.execute(f"PRAGMA user_version={version}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return start, version


def _script(db: sqlite3.Connection, script: str) -> None:
    # executescript() would COMMIT our transaction first; run the statements one by one instead.
    for stmt in script.split(";"):
        if stmt.strip():
            db.execute(stmt)


def _to_v1(db: sqlite3.Connection, _local: LocalTime) -> None:
    _script(db, SCHEMA_V1)


def _to_v2(db: sqlite3.Connection, local: LocalTime) -> None:
    _script(db, SCHEMA_V2)
    # Backfill the new counters from the events a v1 file holds (once; v1 files are small).
    agg: dict[tuple[str, str, int, str, str, str, str], int] = defaultdict(int)
    for cp, kiosk, ts, lane, direction, body in db.execute(
            "SELECT checkpoint, kiosk, ts_ms, lane, dir, body FROM events"):
        day, hour = local.day_hour(ts)
        for metric, n in event_metrics(json.loads(body)):
            agg[(cp, day, hour, kiosk, lane, direction, metric)] += n
    db.executemany("INSERT INTO agg VALUES (?,?,?,?,?,?,?,?)", [k + (n,) for k, n in agg.items()])
    db.execute(
        "INSERT INTO delivery (checkpoint, kiosk, epoch, min_seq, max_seq, received, first_ts_ms, last_ts_ms,"
        " first_received_ms, last_received_ms) SELECT checkpoint, kiosk, epoch, min(seq), max(seq), count(*),"
        " min(ts_ms), max(ts_ms), min(received_ms), max(received_ms) FROM events GROUP BY 1, 2, 3")
    db.execute("UPDATE delivery SET lost_reported = (SELECT coalesce(sum(json_extract(body,'$.lost')),0) FROM events e"
               " WHERE e.checkpoint=delivery.checkpoint AND e.kiosk=delivery.kiosk AND e.epoch=delivery.epoch"
               " AND e.type='fault' AND json_type(body,'$.lost')='integer')")


# ---- per-event counters ----------------------------------------------------------------------

def event_metrics(body: dict[str, Any]) -> list[tuple[str, int]]:
    """The counters one event adds to its hour: [(metric, n)]."""
    etype = body.get("type")
    out: list[tuple[str, int]] = [("events", 1), ("type:" + str(etype), 1)]
    code = body.get("code") if etype in (protocol.SCREENING, protocol.SCAN, protocol.MANUAL) else None
    if etype == protocol.SCREENING:
        out += [("screened", 1), (str(body.get("result")), 1)]
    elif etype == protocol.MANUAL:
        out += [("manual", 1), ("manual:" + str(body.get("result")), 1)]
    elif etype == protocol.FAULT:
        out.append(("fault:" + str(body.get("part")), 1))
        lost = body.get("lost")
        if isinstance(lost, int) and lost > 0:
            out.append(("lost", lost))
    if isinstance(code, dict):
        if code.get("kind") == "vehicle":
            out.append(("vehicles", 1))
        else:
            out.append(("color:" + str(code.get("color")), 1))
    return out


def _alerts_for_event(cp: str, kiosk: str, body: dict[str, Any], ts: int) -> list[tuple[str, str, dict[str, Any]]]:
    """-> [(id, kind, context)] the event raises."""
    etype = body.get("type")
    key = f"{cp}:{kiosk}:{body['epoch']}:{body['seq']}"
    ctx: dict[str, Any] = {"event": [cp, kiosk, body["epoch"], body["seq"]], "type": etype, "lane": body["lane"],
                           "dir": body["dir"], "ts": ts}
    out: list[tuple[str, str, dict[str, Any]]] = []
    code = body.get("code") if etype in (protocol.SCREENING, protocol.SCAN, protocol.MANUAL) else None
    if isinstance(code, dict):
        ctx["code"] = {"kind": code.get("kind"), "color": code.get("color"), "holder_ref": code.get("holder_ref")}
    if etype in (protocol.SCREENING, protocol.MANUAL) and body.get("result") == "fever":
        fever_ctx = dict(ctx)
        for name in ("temp_c", "skin_c", "ambient_c", "distance_cm", "roi", "operator", "note"):
            if name in body:
                fever_ctx[name] = body[name]
        out.append(("fever:" + key, "fever", fever_ctx))
    if isinstance(code, dict):
        reason = str(body.get("reason", ""))
        if code.get("valid") is False or "forged" in reason or "signature" in reason:
            out.append(("forged:" + key, "forged_pass", dict(ctx, reason=reason)))
        elif code.get("color") == "red":
            out.append(("red:" + key, "red_pass", ctx))
    if etype == protocol.FAULT and not body.get("cleared"):
        kind = FAULT_ALERT.get(str(body.get("part")))
        if kind:
            out.append(("fault:" + key, kind, dict(ctx, part=body.get("part"), detail=body.get("detail"),
                                                   lost=body.get("lost", 0))))
    return out


# ---- queries (shared by the writer and read-only connections) ---------------------------------

def _rows(cur: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _alert_row(row: dict[str, Any]) -> dict[str, Any]:
    row = dict(row)
    row["context"] = json.loads(row["context"])
    return row


class Queries:
    """Read-only queries (HTTP handlers, CLI, reports, tests); safe beside the writer thanks to WAL."""

    _db: sqlite3.Connection

    def __init__(self, path: Path | str) -> None:
        self._db = connect(path, readonly=True)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Queries":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return _rows(self._db.execute(sql, tuple(args)))

    # -- foundation endpoints --
    def summary(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for cp, etype, result, n in self._db.execute("SELECT checkpoint, type, result, n FROM counts ORDER BY 1, 2, 3"):
            s = out.setdefault(cp, {"events": 0, "screened": 0, "results": {}, "types": {}})
            s["events"] += n
            s["types"][etype] = s["types"].get(etype, 0) + n
            if etype == "screening":
                s["screened"] += n
                s["results"][result] = n
        for cp, state, n in self._db.execute("SELECT checkpoint, state, count(*) FROM kiosks GROUP BY 1, 2"):
            s = out.setdefault(cp, {"events": 0, "screened": 0, "results": {}, "types": {}})
            s.setdefault("kiosks", {})[state] = n
        return out

    def kiosks(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT checkpoint, kiosk, state, fw, board, epoch, boot, config_hash, changed_ms,"
                         " last_seen_ms, last_heartbeat_ms, offline_source, telemetry FROM kiosks ORDER BY 1, 2")
        for r in rows:
            r["telemetry"] = json.loads(r["telemetry"]) if r["telemetry"] else None
        return rows

    def rejects(self) -> dict[str, int]:
        return {reason: n for reason, n in self._db.execute("SELECT reason, n FROM rejects")}

    def stat(self, name: str) -> int:
        row = self._db.execute("SELECT n FROM stats WHERE name=?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def event_keys(self) -> list[tuple[str, str, str, int]]:
        rows = self._db.execute("SELECT checkpoint, kiosk, epoch, seq FROM events ORDER BY 1, 2, 3, 4")
        return [(a, b, c, d) for a, b, c, d in rows]

    def event_count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM events").fetchone()[0])

    def schema_version(self) -> int:
        return _schema_version(self._db)

    # -- dead letters, delivery --
    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._all("SELECT id, received_ms, topic, reason, detail, size, payload FROM dead_letters"
                         " ORDER BY id DESC LIMIT ?", (limit,))
        for r in rows:
            payload = r.pop("payload")
            r["payload_head"] = payload[:256].decode("utf-8", "replace") if payload is not None else None
        return rows

    def delivery(self, checkpoint: str | None = None) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM delivery WHERE ?1 IS NULL OR checkpoint=?1 ORDER BY 1, 2, first_ts_ms",
                         (checkpoint,))
        for r in rows:
            # seq starts at 0 in every epoch (kiosk nvstate), so everything below max_seq was made.
            r["missing"] = r["max_seq"] + 1 - r["received"]
        return rows

    def seq_gaps(self, checkpoint: str, kiosk: str, epoch: str, limit: int = 100) -> list[tuple[int, int]]:
        """Missing seq ranges [first, last] among the events still held (purged ones count as held)."""
        held = self._db.execute(
            "SELECT min(seq) FROM events WHERE checkpoint=? AND kiosk=? AND epoch=?", (checkpoint, kiosk, epoch)
        ).fetchone()[0]
        out: list[tuple[int, int]] = []
        if held is not None and held > 0 and not self._purged_before(checkpoint, kiosk, epoch):
            out.append((0, held - 1))
        for seq, nxt in self._db.execute(
                "SELECT seq, nxt FROM (SELECT seq, lead(seq) OVER (ORDER BY seq) AS nxt FROM events"
                " WHERE checkpoint=? AND kiosk=? AND epoch=?) WHERE nxt > seq + 1 LIMIT ?",
                (checkpoint, kiosk, epoch, limit)):
            out.append((seq + 1, nxt - 1))
        return out

    def _purged_before(self, checkpoint: str, kiosk: str, epoch: str) -> bool:
        row = self._db.execute("SELECT received, max_seq FROM delivery WHERE checkpoint=? AND kiosk=? AND epoch=?",
                               (checkpoint, kiosk, epoch)).fetchone()
        held = self._db.execute("SELECT count(*) FROM events WHERE checkpoint=? AND kiosk=? AND epoch=?",
                                (checkpoint, kiosk, epoch)).fetchone()[0]
        return bool(row and held < row[0])

    # -- aggregates --
    def checkpoints(self) -> list[str]:
        rows = self._db.execute("SELECT checkpoint FROM kiosks UNION SELECT DISTINCT checkpoint FROM agg"
                                " UNION SELECT checkpoint FROM desired_config ORDER BY 1")
        return [r[0] for r in rows]

    def agg_rows(self, checkpoint: str, day: str) -> list[dict[str, Any]]:
        return self._all("SELECT hour, kiosk, lane, dir, metric, n FROM agg WHERE checkpoint=? AND day=?",
                         (checkpoint, day))

    def aggregates(self, checkpoint: str, day: str) -> dict[str, Any]:
        """Day totals per checkpoint, lane+dir, kiosk and hour, and lane throughput (screened per hour)."""
        total: dict[str, int] = defaultdict(int)
        lanes: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        kiosks: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        hours: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        lane_hours: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))
        for r in self.agg_rows(checkpoint, day):
            metric, n = r["metric"], r["n"]
            lane = f"{r['lane']}/{r['dir']}"
            total[metric] += n
            lanes[lane][metric] += n
            kiosks[r["kiosk"]][metric] += n
            hours[r["hour"]][metric] += n
            if metric in ("screened", "manual"):
                lane_hours[lane][r["hour"]] += n
        throughput = {lane: {"peak_per_hour": max(h.values()), "mean_per_active_hour": round(sum(h.values()) / len(h), 1),
                             "per_hour": dict(sorted(h.items()))} for lane, h in lane_hours.items()}
        return {"checkpoint": checkpoint, "day": day, "total": dict(total),
                "lanes": {k: dict(v) for k, v in sorted(lanes.items())},
                "kiosks": {k: dict(v) for k, v in sorted(kiosks.items())},
                "hours": {h: dict(v) for h, v in sorted(hours.items())}, "throughput": throughput}

    # -- alerts --
    def alerts(self, state: str | None = None, checkpoint: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM alerts WHERE (?1 IS NULL OR state=?1) AND (?2 IS NULL OR checkpoint=?2)"
                         " ORDER BY raised_ms DESC LIMIT ?3", (state, checkpoint, limit))
        return [_alert_row(r) for r in rows]

    def alert(self, alert_id: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM alerts WHERE id=?", (alert_id,))
        return _alert_row(rows[0]) if rows else None

    # -- fleet, config, commands --
    def fleet(self, now_ms: int, offline_after_ms: int) -> list[dict[str, Any]]:
        desired = {(r["checkpoint"], r["kiosk"]): r for r in self._all("SELECT * FROM desired_config")}
        out = []
        for k in self.kiosks():
            tele = k.pop("telemetry") or {}
            want = desired.get((k["checkpoint"], k["kiosk"]))
            k.update({
                "online": k["state"] == "online" and now_ms - k["last_seen_ms"] <= offline_after_ms,
                "fps": tele.get("fps"), "outbox": tele.get("outbox"), "rssi": tele.get("rssi"),
                "free_mem": tele.get("free_mem"), "air_c": tele.get("air_c"), "last_error": tele.get("last_error"),
                "applied_config_hash": k.pop("config_hash"),
                "desired_config_hash": want["hash"] if want else None,
                "desired_settings": json.loads(want["settings"]) if want else None,
            })
            k["config_in_sync"] = want is None or want["hash"] == k["applied_config_hash"]
            out.append(k)
        return out

    def desired_config(self, checkpoint: str, kiosk: str) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM desired_config WHERE checkpoint=? AND kiosk=?", (checkpoint, kiosk))
        if not rows:
            return None
        rows[0]["settings"] = json.loads(rows[0]["settings"])
        return rows[0]

    def config_audit(self, checkpoint: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM config_audit WHERE ?1 IS NULL OR checkpoint=?1 ORDER BY id DESC LIMIT ?2",
                         (checkpoint, limit))
        for r in rows:
            r["old"] = json.loads(r["old"]) if r["old"] else None
            r["new"] = json.loads(r["new"])
        return rows

    def commands(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM commands ORDER BY issued_ms DESC LIMIT ?", (limit,))
        for r in rows:
            r["args"] = json.loads(r["args"])
            r["ack_ok"] = None if r["ack_ok"] is None else bool(r["ack_ok"])
        return rows

    # -- reports --
    def reports(self, checkpoint: str | None = None, day: str | None = None) -> list[dict[str, Any]]:
        return self._all("SELECT checkpoint, day, version, issued_ms, published FROM reports"
                         " WHERE (?1 IS NULL OR checkpoint=?1) AND (?2 IS NULL OR day=?2) ORDER BY 2 DESC, 1, 3",
                         (checkpoint, day))

    def report(self, checkpoint: str, day: str, version: int | None = None) -> dict[str, Any] | None:
        row = self._db.execute("SELECT body FROM reports WHERE checkpoint=? AND day=? AND (?3 IS NULL OR version=?3)"
                               " ORDER BY version DESC LIMIT 1", (checkpoint, day, version)).fetchone()
        return json.loads(row[0]) if row else None

    def report_issued(self) -> set[tuple[str, str]]:
        return {(cp, day) for cp, day in self._db.execute("SELECT DISTINCT checkpoint, day FROM reports")}

    def dirty_reports(self) -> list[tuple[str, str, int]]:
        return [(cp, d, n) for cp, d, n in self._db.execute("SELECT checkpoint, day, late FROM report_dirty")]

    def events_between(self, checkpoint: str, start_ms: int, end_ms: int, etype: str | None = None,
                       result: str | None = None) -> list[dict[str, Any]]:
        return self._all("SELECT checkpoint, kiosk, epoch, seq, type, result, lane, dir, ts_ms, ts_source,"
                         " received_ms, temp_c, holder_ref, code_color FROM events"
                         " WHERE checkpoint=? AND ts_ms>=? AND ts_ms<? AND (?4 IS NULL OR type=?4)"
                         " AND (?5 IS NULL OR result=?5) ORDER BY ts_ms",
                         (checkpoint, start_ms, end_ms, etype, result))

    def state_log(self, checkpoint: str, start_ms: int, end_ms: int) -> dict[str, list[tuple[int, str]]]:
        """Per kiosk: [(ts, state)] from the last change before start_ms up to end_ms."""
        out: dict[str, list[tuple[int, str]]] = defaultdict(list)
        for kiosk, ts, state in self._db.execute(
                "SELECT kiosk, ts_ms, state FROM kiosk_states s WHERE checkpoint=?1 AND ts_ms < ?3 AND ts_ms >="
                " coalesce((SELECT max(ts_ms) FROM kiosk_states p WHERE p.checkpoint=s.checkpoint AND p.kiosk=s.kiosk"
                " AND p.ts_ms <= ?2), 0) ORDER BY kiosk, ts_ms, rowid", (checkpoint, start_ms, end_ms)):
            out[kiosk].append((ts, state))
        return dict(out)

    def seq_gaps_between(self, checkpoint: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
        """Seq gaps whose preceding event lies in [start, end): possibly lost records of that day."""
        return self._all(
            "SELECT kiosk, epoch, seq + 1 AS first, nxt - 1 AS last, nxt - seq - 1 AS missing, ts_ms AS after_ts"
            " FROM (SELECT kiosk, epoch, seq, ts_ms, lead(seq) OVER (PARTITION BY kiosk, epoch ORDER BY seq) AS nxt"
            " FROM events WHERE checkpoint=?1 AND kiosk<>?4 AND ts_ms >= ?2 - 86400000 AND ts_ms < ?3 + 86400000)"
            " WHERE nxt > seq + 1 AND ts_ms >= ?2 AND ts_ms < ?3 ORDER BY kiosk, epoch, seq",
            (checkpoint, start_ms, end_ms, MANUAL_KIOSK))

    # -- tracing --
    def trace_holder(self, holder_ref: str, start_ms: int, end_ms: int, limit: int = 10000) -> list[dict[str, Any]]:
        """Every passage of one holder between start and end, across this store's checkpoints."""
        return self._all("SELECT checkpoint, kiosk, epoch, seq, type, result, lane, dir, ts_ms, temp_c, code_color"
                         " FROM events WHERE holder_ref=? AND ts_ms>=? AND ts_ms<=? ORDER BY ts_ms LIMIT ?",
                         (holder_ref, start_ms, end_ms, limit))

    def contacts(self, checkpoint: str, kiosk: str, at_ms: int, minutes: float, limit: int = 10000) -> list[dict[str, Any]]:
        """Everyone screened at this kiosk within `minutes` of `at_ms` (e.g. a fever)."""
        span = int(minutes * 60_000)
        return self._all("SELECT checkpoint, kiosk, epoch, seq, type, result, lane, dir, ts_ms, temp_c, code_color,"
                         " holder_ref FROM events WHERE checkpoint=? AND kiosk=? AND ts_ms>=? AND ts_ms<=?"
                         " ORDER BY ts_ms LIMIT ?", (checkpoint, kiosk, at_ms - span, at_ms + span, limit))

    def event(self, checkpoint: str, kiosk: str, epoch: str, seq: int) -> dict[str, Any] | None:
        rows = self._all("SELECT * FROM events WHERE checkpoint=? AND kiosk=? AND epoch=? AND seq=?",
                         (checkpoint, kiosk, epoch, seq))
        if not rows:
            return None
        rows[0]["body"] = json.loads(rows[0]["body"])
        return rows[0]


Reader = Queries  # the foundation's name


# ---- the writer ------------------------------------------------------------------------------

@dataclass
class _Epoch:
    first_ts: int
    last_ts: int


class SQLiteStore(Queries):
    """The single writer. Its methods are thread-safe (one lock); readers open `reader()`."""

    def __init__(self, path: Path | str, local: LocalTime | None = None, dead_letter_max: int = 1000,
                 dead_letter_payload_max: int = 2048, late_after_ms: int = 300_000) -> None:
        self.path = Path(path)
        self.local = local or LocalTime()
        self.dead_letter_max = dead_letter_max
        self.dead_letter_payload_max = dead_letter_payload_max
        self.late_after_ms = late_after_ms
        self._db = connect(self.path)
        self._lock = threading.RLock()
        self.migrated = migrate(self._db, self.local)
        self._load_caches()

    def _load_caches(self) -> None:
        self._epochs: dict[tuple[str, str], dict[str, _Epoch]] = defaultdict(dict)
        for cp, kiosk, epoch, first, last in self._db.execute(
                "SELECT checkpoint, kiosk, epoch, first_ts_ms, last_ts_ms FROM delivery"):
            self._epochs[(cp, kiosk)][epoch] = _Epoch(first, last)
        self._reported = self.report_issued()

    def reader(self) -> Queries:
        return Queries(self.path)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- ingest --
    def write_batch(self, items: Iterable[Accepted | Rejected]) -> BatchResult:
        """Apply a batch in one transaction; -> what happened, and the alerts it raised."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                result = self._apply(items)
                self._db.execute("COMMIT")
                return result
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._load_caches()
                raise

    def _apply(self, items: Iterable[Accepted | Rejected]) -> BatchResult:
        outcome = {"stored": 0, "duplicates": 0, "status": 0, "telemetry": 0, "ack": 0, "rejected": 0,
                   "never_stored": 0, "other": 0}
        acc = _Accumulator()
        alerts: list[dict[str, Any]] = []
        for item in items:
            if isinstance(item, Rejected):
                self._reject(item, acc)
                outcome["rejected"] += 1
            elif item.channel == protocol.EVENT:
                stored = self._insert_event(item, acc, alerts)
                outcome["stored" if stored else "duplicates"] += 1
            elif item.channel == protocol.STATUS:
                self._upsert_status(item, alerts)
                outcome["status"] += 1
            elif item.channel == protocol.TELEMETRY:
                self._telemetry(item)
                outcome["telemetry"] += 1
            elif item.channel == protocol.ACK:
                self._ack(item)
                outcome["ack"] += 1
            elif item.channel in protocol.NEVER_STORED:
                outcome["never_stored"] += 1
            else:
                outcome["other"] += 1
        acc.flush(self._db)
        if outcome["duplicates"]:
            self._db.execute("INSERT INTO stats VALUES ('duplicates', ?) ON CONFLICT(name) DO UPDATE SET n = n + excluded.n",
                             (outcome["duplicates"],))
        if acc.dead_letters:
            self._trim_dead_letters()
        return BatchResult(outcome, alerts)

    def _reject(self, item: Rejected, acc: "_Accumulator") -> None:
        acc.rejects[item.reason] += 1
        if self.dead_letter_max <= 0:
            return
        channel = item.topic.rsplit("/", 1)[-1]
        if item.payload is None or channel in protocol.NEVER_STORED:
            return  # verify/verdict carry raw codes: counted, never kept
        self._db.execute("INSERT INTO dead_letters (received_ms, topic, reason, detail, size, payload)"
                         " VALUES (?,?,?,?,?,?)", (item.received_ms, item.topic[:256], item.reason, item.detail[:256],
                                                   item.size or len(item.payload),
                                                   item.payload[:self.dead_letter_payload_max]))
        acc.dead_letters += 1

    def _trim_dead_letters(self) -> None:
        top = self._db.execute("SELECT max(id) FROM dead_letters").fetchone()[0] or 0
        self._db.execute("DELETE FROM dead_letters WHERE id <= ?", (top - self.dead_letter_max,))

    def _insert_event(self, item: Accepted, acc: "_Accumulator", alerts: list[dict[str, Any]]) -> bool:
        body = item.body
        cp, kiosk = item.checkpoint, item.kiosk
        ts = body["ts"]
        ts_ms = ts if ts is not None else item.received_ms
        etype = body["type"]
        code = body.get("code") if etype in (protocol.SCREENING, protocol.SCAN, protocol.MANUAL) else None
        if not isinstance(code, dict):
            code = {}
        temp = body.get("temp_c")
        cur = self._db.execute(
            "INSERT OR IGNORE INTO events (checkpoint, kiosk, epoch, seq, type, result, lane, dir, ts_ms, ts_source,"
            " received_ms, body, holder_ref, code_kind, code_color, temp_c) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (cp, kiosk, body["epoch"], body["seq"], etype, body.get("result"), body["lane"], body["dir"], ts_ms,
             "kiosk" if ts is not None else "received", item.received_ms, item.raw if item.raw is not None else _dumps(body),
             code.get("holder_ref") if isinstance(code.get("holder_ref"), str) else None,
             code.get("kind"), code.get("color"), temp if isinstance(temp, (int, float)) else None))
        if cur.rowcount != 1:
            return False
        day, hour = self.local.day_hour(ts_ms)
        late = item.received_ms - ts_ms > self.late_after_ms
        metrics = event_metrics(body)
        if late:
            metrics.append(("late", 1))
        for metric, n in metrics:
            acc.agg[(cp, day, hour, kiosk, body["lane"], body["dir"], metric)] += n
        acc.counts[(cp, etype, body.get("result") or "")] += 1
        # Late for a day already reported? Asked of the database (another process may have issued
        # the report), once per day per batch; the batch's write lock keeps the answer true.
        reported = acc.reported.get((cp, day))
        if reported is None:
            reported = acc.reported[(cp, day)] = self._db.execute(
                "SELECT 1 FROM reports WHERE checkpoint=? AND day=? LIMIT 1", (cp, day)).fetchone() is not None
        if reported:
            acc.dirty[(cp, day)] += 1
        if kiosk != MANUAL_KIOSK:
            self._account(item, ts_ms, late, acc, alerts)
        for alert_id, kind, ctx in _alerts_for_event(cp, kiosk, body, ts_ms):
            made = self.raise_alert(alert_id, cp, kiosk, kind, ts_ms, item.received_ms, ctx)
            if made:
                alerts.append(made)
        key = (cp, kiosk)
        if acc.seen.get(key, 0) < item.received_ms:
            acc.seen[key] = item.received_ms
        return True

    def _account(self, item: Accepted, ts_ms: int, late: bool, acc: "_Accumulator",
                 alerts: list[dict[str, Any]]) -> None:
        cp, kiosk, body = item.checkpoint, item.kiosk, item.body
        epoch = body["epoch"]
        known = self._epochs[(cp, kiosk)]
        d = acc.delivery.get((cp, kiosk, epoch))
        if d is None:
            d = acc.delivery[(cp, kiosk, epoch)] = _Delivery(body["seq"], body["seq"], 0, 0, 0, ts_ms, ts_ms,
                                                             item.received_ms, item.received_ms)
        d.add(body["seq"], ts_ms, item.received_ms, late,
              body.get("lost", 0) if body["type"] == protocol.FAULT and isinstance(body.get("lost"), int) else 0)
        mine = known.get(epoch)
        if mine is None:
            if known:
                ctx = {"epoch": epoch, "previous": sorted(known), "first_seq": body["seq"], "ts": ts_ms}
                made = self.raise_alert(f"new_epoch:{cp}:{kiosk}:{epoch}", cp, kiosk, "new_epoch", ts_ms,
                                        item.received_ms, ctx)
                if made:
                    alerts.append(made)
            mine = known[epoch] = _Epoch(ts_ms, ts_ms)
        else:
            mine.first_ts, mine.last_ts = min(mine.first_ts, ts_ms), max(mine.last_ts, ts_ms)
        for other, span in known.items():
            # Two epochs whose event times interleave: two boards share one kiosk id (a clone, a
            # swapped SD/flash), not a reflash (which ends the old series before the new one starts).
            if other != epoch and span.first_ts < mine.last_ts and mine.first_ts < span.last_ts:
                pair = sorted((epoch, other))
                made = self.raise_alert(f"epoch_conflict:{cp}:{kiosk}:{pair[0]}:{pair[1]}", cp, kiosk,
                                        "epoch_conflict", ts_ms, item.received_ms,
                                        {"epochs": pair, "spans": {e: [known[e].first_ts, known[e].last_ts] for e in pair}})
                if made:
                    alerts.append(made)

    def _log_state(self, cp: str, kiosk: str, ts: int, state: str, source: str) -> None:
        self._db.execute("INSERT INTO kiosk_states VALUES (?,?,?,?,?)", (cp, kiosk, ts, state, source))

    def _upsert_status(self, item: Accepted, alerts: list[dict[str, Any]]) -> None:
        b = item.body
        cp, kiosk, now = item.checkpoint, item.kiosk, item.received_ms
        row = self._db.execute("SELECT state FROM kiosks WHERE checkpoint=? AND kiosk=?", (cp, kiosk)).fetchone()
        before = row[0] if row else None
        self._db.execute(
            "INSERT INTO kiosks (checkpoint, kiosk, state, fw, board, epoch, boot, config_hash, changed_ms,"
            " last_seen_ms, offline_source) VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(checkpoint, kiosk) DO UPDATE SET"
            " state=excluded.state, fw=coalesce(excluded.fw, fw), board=coalesce(excluded.board, board),"
            " epoch=coalesce(excluded.epoch, epoch), boot=coalesce(excluded.boot, boot),"
            " config_hash=coalesce(excluded.config_hash, config_hash),"
            " changed_ms=CASE WHEN state=excluded.state THEN changed_ms ELSE excluded.changed_ms END,"
            " last_seen_ms=max(last_seen_ms, excluded.last_seen_ms), offline_source=excluded.offline_source",
            (cp, kiosk, b["state"], b.get("fw"), b.get("board"), b.get("epoch"), b.get("boot"),
             b.get("config_hash"), now, now, "lwt" if b["state"] == "offline" else None))
        if before == b["state"]:
            return
        self._log_state(cp, kiosk, now, b["state"], "status")
        if b["state"] == "offline" and before == "online":
            made = self.raise_alert(f"offline:{cp}:{kiosk}:{now}", cp, kiosk, "kiosk_offline", now, now,
                                    {"source": "lwt", "epoch": b.get("epoch"), "boot": b.get("boot")})
            if made:
                alerts.append(made)
        elif b["state"] == "online":
            self._resolve_offline(cp, kiosk, now)

    def _resolve_offline(self, cp: str, kiosk: str, now: int) -> None:
        self._db.execute("UPDATE alerts SET state=?, resolved_by='gateway', resolved_ms=?, resolve_note='back online'"
                         " WHERE checkpoint=? AND kiosk=? AND kind='kiosk_offline' AND state<>?",
                         (RESOLVED, now, cp, kiosk, RESOLVED))

    def _telemetry(self, item: Accepted) -> None:
        cp, kiosk, now = item.checkpoint, item.kiosk, item.received_ms
        row = self._db.execute("SELECT state, offline_source FROM kiosks WHERE checkpoint=? AND kiosk=?",
                               (cp, kiosk)).fetchone()
        self._db.execute("UPDATE kiosks SET telemetry=?, last_heartbeat_ms=?, last_seen_ms=max(last_seen_ms, ?)"
                         " WHERE checkpoint=? AND kiosk=?", (_dumps(item.body), now, now, cp, kiosk))
        # Telemetry is QoS 0 and never queued: it proves the kiosk is connected right now.
        if row and row[0] == "offline" and row[1] == "silent":
            self._db.execute("UPDATE kiosks SET state='online', offline_source=NULL, changed_ms=? WHERE checkpoint=?"
                             " AND kiosk=?", (now, cp, kiosk))
            self._log_state(cp, kiosk, now, "online", "telemetry")
            self._resolve_offline(cp, kiosk, now)

    def _ack(self, item: Accepted) -> None:
        b = item.body
        self._db.execute("UPDATE commands SET state=?, ack_ok=?, ack_detail=?, ack_ms=? WHERE id=? AND checkpoint=?"
                         " AND kiosk=? AND state IN ('sent','expired')",
                         ("acked" if b["ok"] else "failed", int(b["ok"]), b["detail"][:500], item.received_ms,
                          b["id"], item.checkpoint, item.kiosk))

    # -- manual screenings --
    def record_manual(self, checkpoint: str, lane: str, direction: str, result: str, temp_c: float | None,
                      operator: str, ts_ms: int, now_ms: int, holder_ref: str | None = None,
                      color: str = "none", note: str = "", kiosk_hint: str | None = None) -> tuple[dict[str, Any], BatchResult]:
        """A passage screened by hand: an event of type `manual` under the reserved kiosk id
        `_gateway`, in an epoch this store made (so no kiosk can collide with it), with its own seq."""
        fields: dict[str, Any] = {"result": result, "temp_c": temp_c, "operator": operator}
        if holder_ref is not None or color != "none":
            fields["code"] = protocol.code_info("health", color, holder_ref)
        if note:
            fields["note"] = note
        if kiosk_hint:
            fields["kiosk_hint"] = protocol.check_id(kiosk_hint, "kiosk")
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                epoch = self._meta("manual_epoch") or self._set_meta("manual_epoch", "gw" + os.urandom(6).hex())
                seq = int(self._meta("manual_seq") or "0")
                self._set_meta("manual_seq", str(seq + 1))
                body = protocol.event(epoch, seq, 0, ts_ms, 0, lane, direction, protocol.MANUAL, "", fields)
                result_ = self._apply([Accepted(checkpoint, MANUAL_KIOSK, protocol.EVENT, body, now_ms)])
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._load_caches()
                raise
        return body, result_

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def _set_meta(self, key: str, value: str) -> str:
        self._db.execute("INSERT INTO meta VALUES (?,?) ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, value))
        return value

    # -- alerts --
    def raise_alert(self, alert_id: str, checkpoint: str, kiosk: str | None, kind: str, ts_ms: int,
                    now_ms: int, context: dict[str, Any]) -> dict[str, Any] | None:
        """Insert an alert unless one with this id exists; -> the new alert, or None."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO alerts (id, checkpoint, kiosk, kind, ts_ms, raised_ms, context, state, notified_ms)"
                " VALUES (?,?,?,?,?,?,?,?,?)", (alert_id, checkpoint, kiosk, kind, ts_ms, now_ms, _dumps(context), OPEN, now_ms))
            if cur.rowcount != 1:
                return None
            return {"id": alert_id, "checkpoint": checkpoint, "kiosk": kiosk, "kind": kind, "ts_ms": ts_ms,
                    "raised_ms": now_ms, "context": context, "state": OPEN, "repeats": 0}

    def set_alert_state(self, alert_id: str, state: str, who: str, note: str, now_ms: int) -> dict[str, Any]:
        """Acknowledge or resolve (with a note). Resolving implies acknowledging."""
        if state not in (ACKNOWLEDGED, RESOLVED):
            raise ValueError(f"state must be {ACKNOWLEDGED} or {RESOLVED}")
        if not who:
            raise ValueError("who acknowledges or resolves must be named")
        with self._lock, self._txn_ctx():
            row = self._db.execute("SELECT state FROM alerts WHERE id=?", (alert_id,)).fetchone()
            if row is None:
                raise KeyError(alert_id)
            if row[0] == RESOLVED:
                raise ValueError("alert already resolved")
            if state == ACKNOWLEDGED or row[0] == OPEN:
                self._db.execute("UPDATE alerts SET state=?, ack_by=?, ack_ms=?, ack_note=? WHERE id=?",
                                 (ACKNOWLEDGED, who, now_ms, note, alert_id))
            if state == RESOLVED:
                self._db.execute("UPDATE alerts SET state=?, resolved_by=?, resolved_ms=?, resolve_note=? WHERE id=?",
                                 (RESOLVED, who, now_ms, note, alert_id))
        found = self.alert(alert_id)
        assert found is not None
        return found

    def due_fever_repeats(self, now_ms: int, every_ms: int) -> list[dict[str, Any]]:
        """Unacknowledged fever alerts not notified for `every_ms`: marked notified now, returned."""
        # The timers run every second beside the writer process: look before taking the write lock.
        with self._lock:
            due = self._db.execute("SELECT 1 FROM alerts WHERE state=? AND kind='fever' AND notified_ms <= ? LIMIT 1",
                                    (OPEN, now_ms - every_ms)).fetchone()
        if not due:
            return []
        with self._lock, self._txn_ctx():
            rows = self._all("SELECT * FROM alerts WHERE state=? AND kind='fever' AND notified_ms <= ?",
                             (OPEN, now_ms - every_ms))
            for r in rows:
                r["repeats"] += 1
                self._db.execute("UPDATE alerts SET notified_ms=?, repeats=? WHERE id=?", (now_ms, r["repeats"], r["id"]))
        return [_alert_row(r) for r in rows]

    def unpublished_alerts(self) -> list[dict[str, Any]]:
        return [_alert_row(r) for r in self._all("SELECT * FROM alerts WHERE published=0 ORDER BY raised_ms LIMIT 500")]

    def mark_published(self, table: str, key: dict[str, Any]) -> None:
        if table not in ("alerts", "reports", "desired_config", "commands"):
            raise ValueError(table)
        where = " AND ".join(f"{k}=?" for k in key)
        with self._lock, self._txn_ctx():
            self._db.execute(f"UPDATE {table} SET published=1 WHERE {where}", tuple(key.values()))

    def mark_silent_offline(self, now_ms: int, offline_after_ms: int) -> list[dict[str, Any]]:
        """Kiosks whose status says online but that sent nothing for offline_after_ms: offline."""
        with self._lock:
            due = self._db.execute("SELECT 1 FROM kiosks WHERE state='online' AND last_seen_ms < ? LIMIT 1",
                                    (now_ms - offline_after_ms,)).fetchone()
        if not due:
            return []
        made: list[dict[str, Any]] = []
        with self._lock, self._txn_ctx():
            rows = self._db.execute("SELECT checkpoint, kiosk, last_seen_ms FROM kiosks WHERE state='online'"
                                    " AND last_seen_ms < ?", (now_ms - offline_after_ms,)).fetchall()
            for cp, kiosk, last in rows:
                self._db.execute("UPDATE kiosks SET state='offline', offline_source='silent', changed_ms=?"
                                 " WHERE checkpoint=? AND kiosk=?", (now_ms, cp, kiosk))
                # The gap starts when we last heard from it, not when we noticed.
                self._log_state(cp, kiosk, last, "offline", "silent")
                alert = self.raise_alert(f"offline:{cp}:{kiosk}:{now_ms}", cp, kiosk, "kiosk_offline", last, now_ms,
                                         {"source": "silent", "last_seen_ms": last})
                if alert:
                    made.append(alert)
        return made

    # -- fleet config and commands --
    def set_desired_config(self, checkpoint: str, kiosk: str, settings: dict[str, Any], config_hash: str,
                           who: str, now_ms: int) -> dict[str, Any]:
        """Store the desired config and audit the change; -> {"old", "new", "hash", "alert"}."""
        with self._lock, self._txn_ctx():
            row = self._db.execute("SELECT settings FROM desired_config WHERE checkpoint=? AND kiosk=?",
                                   (checkpoint, kiosk)).fetchone()
            old = json.loads(row[0]) if row else None
            self._db.execute("INSERT INTO desired_config VALUES (?,?,?,?,?,?,0) ON CONFLICT(checkpoint, kiosk) DO UPDATE"
                             " SET settings=excluded.settings, hash=excluded.hash, updated_ms=excluded.updated_ms,"
                             " updated_by=excluded.updated_by, published=0",
                             (checkpoint, kiosk, _dumps(settings), config_hash, now_ms, who))
            self._db.execute("INSERT INTO config_audit (checkpoint, kiosk, ts_ms, who, old, new) VALUES (?,?,?,?,?,?)",
                             (checkpoint, kiosk, now_ms, who, _dumps(old) if old is not None else None, _dumps(settings)))
            audit_id = self._db.execute("SELECT last_insert_rowid()").fetchone()[0]
            alert = self.raise_alert(f"config:{checkpoint}:{kiosk}:{audit_id}", checkpoint, kiosk, "threshold_change",
                                     now_ms, now_ms, {"who": who, "old": old, "new": settings, "hash": config_hash})
        return {"old": old, "new": settings, "hash": config_hash, "alert": alert}

    def desired_configs(self) -> list[dict[str, Any]]:
        rows = self._all("SELECT * FROM desired_config")
        for r in rows:
            r["settings"] = json.loads(r["settings"])
        return rows

    def add_command(self, cmd: dict[str, Any], checkpoint: str, kiosk: str, who: str, now_ms: int) -> None:
        with self._lock, self._txn_ctx():
            self._db.execute("INSERT INTO commands (id, checkpoint, kiosk, name, args, issued_ms, expires_ms, issued_by,"
                             " state) VALUES (?,?,?,?,?,?,?,?, 'sent')", (cmd["id"], checkpoint, kiosk, cmd["name"],
                                                                          _dumps(cmd["args"]), now_ms, cmd["expires"], who))

    def expire_commands(self, now_ms: int) -> int:
        with self._lock:
            due = self._db.execute("SELECT 1 FROM commands WHERE state='sent' AND expires_ms < ? LIMIT 1",
                                    (now_ms,)).fetchone()
        if not due:
            return 0
        with self._lock, self._txn_ctx():
            return self._db.execute("UPDATE commands SET state='expired' WHERE state='sent' AND expires_ms < ?",
                                    (now_ms,)).rowcount

    # -- reports --
    def day_event_total(self, checkpoint: str, day: str) -> int:
        row = self._db.execute("SELECT coalesce(sum(n), 0) FROM agg WHERE checkpoint=? AND day=? AND metric='events'",
                               (checkpoint, day)).fetchone()
        return int(row[0])

    def save_report(self, checkpoint: str, day: str, body: dict[str, Any], now_ms: int,
                    built_on_events: int | None = None) -> int:
        """Store the next version of a day's report; clears its late-event mark. -> version.

        `built_on_events`: the day's event total the report was built from (outside this
        transaction, so the writer is not held while it is built); if events arrived since, the
        day stays marked for the next version."""
        with self._lock, self._txn_ctx():
            if built_on_events is not None:
                arrived = self.day_event_total(checkpoint, day) - built_on_events
                if arrived > 0:
                    self._db.execute("INSERT INTO report_dirty VALUES (?,?,?) ON CONFLICT(checkpoint, day) DO UPDATE"
                                     " SET late = late + excluded.late", (checkpoint, day, arrived))
            top = self._db.execute("SELECT max(version) FROM reports WHERE checkpoint=? AND day=?",
                                   (checkpoint, day)).fetchone()[0]
            version = (top or 0) + 1
            body = dict(body, version=version)
            self._db.execute("INSERT INTO reports VALUES (?,?,?,?,?,0)", (checkpoint, day, version, now_ms, _dumps(body)))
            if built_on_events is None or arrived <= 0:
                self._db.execute("DELETE FROM report_dirty WHERE checkpoint=? AND day=?", (checkpoint, day))
        self._reported.add((checkpoint, day))
        return version

    # -- retention --
    def purge(self, before_ms: int, chunk: int = 5000) -> dict[str, int]:
        """Delete personal records older than before_ms (secure_delete overwrites them); aggregates,
        delivery counters, reports and alert outcomes stay. Chunked so ingest is never held long."""
        purged = {"events": 0, "dead_letters": 0, "alerts_scrubbed": 0}
        with self._lock:  # look first: the write lock is shared with the writer process
            due = any(self._db.execute(sql, (before_ms,)).fetchone() for sql in (
                "SELECT 1 FROM events WHERE ts_ms < ? LIMIT 1",
                "SELECT 1 FROM dead_letters WHERE received_ms < ? LIMIT 1",
                "SELECT 1 FROM alerts WHERE ts_ms < ? AND (json_type(context, '$.code.holder_ref') IS NOT NULL"
                " OR json_type(context, '$.roi') IS NOT NULL) LIMIT 1"))
        if not due:
            return purged
        while True:
            with self._lock, self._txn_ctx():
                n = self._db.execute(
                    "DELETE FROM events WHERE (checkpoint, kiosk, epoch, seq) IN (SELECT checkpoint, kiosk, epoch, seq"
                    " FROM events WHERE ts_ms < ? LIMIT ?)", (before_ms, chunk)).rowcount
            purged["events"] += n
            if n < chunk:
                break
        with self._lock, self._txn_ctx():
            purged["dead_letters"] = self._db.execute("DELETE FROM dead_letters WHERE received_ms < ?",
                                                      (before_ms,)).rowcount
            purged["alerts_scrubbed"] = self._db.execute(
                "UPDATE alerts SET context = json_remove(context, '$.code.holder_ref', '$.roi')"
                " WHERE ts_ms < ? AND (json_type(context, '$.code.holder_ref') IS NOT NULL"
                " OR json_type(context, '$.roi') IS NOT NULL)", (before_ms,)).rowcount
        with self._lock:
            # secure_delete zeroes freed pages in the database; old copies in the WAL go with a truncating
            # checkpoint (it waits for the writer's current transaction, once a day).
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return purged

    # -- transactions for the small writers --
    def _txn_ctx(self) -> "_Txn":
        return _Txn(self)

    def transaction(self) -> "_LockedTxn":
        """`with store.transaction():` several calls as one write transaction (they nest)."""
        return _LockedTxn(self)


class _Txn:
    """BEGIN IMMEDIATE .. COMMIT, or ROLLBACK on error; nests inside an open transaction."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.outer = False

    def __enter__(self) -> None:
        db = self.store._db
        self.outer = not db.in_transaction
        if self.outer:
            db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if not self.outer:
            return
        db = self.store._db
        if exc_type is None:
            db.execute("COMMIT")
        else:
            db.execute("ROLLBACK")
            self.store._load_caches()


class _LockedTxn:
    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.txn = _Txn(store)

    def __enter__(self) -> None:
        self.store._lock.acquire()
        try:
            self.txn.__enter__()
        except BaseException:
            self.store._lock.release()
            raise

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.txn.__exit__(exc_type, *rest)
        finally:
            self.store._lock.release()


@dataclass
class _Delivery:
    min_seq: int
    max_seq: int
    received: int
    lost: int
    late: int
    first_ts: int
    last_ts: int
    first_rx: int
    last_rx: int

    def add(self, seq: int, ts: int, rx: int, late: bool, lost: int) -> None:
        self.min_seq, self.max_seq = min(self.min_seq, seq), max(self.max_seq, seq)
        self.received += 1
        self.lost += lost
        self.late += int(late)
        self.first_ts, self.last_ts = min(self.first_ts, ts), max(self.last_ts, ts)
        self.first_rx, self.last_rx = min(self.first_rx, rx), max(self.last_rx, rx)


class _Accumulator:
    """Counter deltas of one batch, written with one statement per table at its end."""

    def __init__(self) -> None:
        self.agg: dict[tuple[str, str, int, str, str, str, str], int] = defaultdict(int)
        self.counts: dict[tuple[str, str, str], int] = defaultdict(int)
        self.rejects: dict[str, int] = defaultdict(int)
        self.delivery: dict[tuple[str, str, str], _Delivery] = {}
        self.dirty: dict[tuple[str, str], int] = defaultdict(int)
        self.dead_letters = 0
        self.seen: dict[tuple[str, str], int] = {}
        self.reported: dict[tuple[str, str], bool] = {}

    def flush(self, db: sqlite3.Connection) -> None:
        if self.seen:
            db.executemany("UPDATE kiosks SET last_seen_ms = max(last_seen_ms, ?) WHERE checkpoint=? AND kiosk=?",
                           [(ms, cp, k) for (cp, k), ms in self.seen.items()])
        if self.agg:
            db.executemany("INSERT INTO agg VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(checkpoint, day, hour, kiosk, lane, dir,"
                           " metric) DO UPDATE SET n = n + excluded.n", [k + (n,) for k, n in self.agg.items()])
        if self.counts:
            db.executemany("INSERT INTO counts VALUES (?,?,?,?) ON CONFLICT(checkpoint, type, result)"
                           " DO UPDATE SET n = n + excluded.n", [k + (n,) for k, n in self.counts.items()])
        if self.rejects:
            db.executemany("INSERT INTO rejects VALUES (?,?) ON CONFLICT(reason) DO UPDATE SET n = n + excluded.n",
                           list(self.rejects.items()))
        if self.dirty:
            db.executemany("INSERT INTO report_dirty VALUES (?,?,?) ON CONFLICT(checkpoint, day)"
                           " DO UPDATE SET late = late + excluded.late", [k + (n,) for k, n in self.dirty.items()])
        if self.delivery:
            db.executemany(
                "INSERT INTO delivery VALUES (?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(checkpoint, kiosk, epoch) DO UPDATE SET"
                " min_seq=min(min_seq, excluded.min_seq), max_seq=max(max_seq, excluded.max_seq),"
                " received=received + excluded.received, lost_reported=lost_reported + excluded.lost_reported,"
                " late=late + excluded.late, first_ts_ms=min(first_ts_ms, excluded.first_ts_ms),"
                " last_ts_ms=max(last_ts_ms, excluded.last_ts_ms),"
                " first_received_ms=min(first_received_ms, excluded.first_received_ms),"
                " last_received_ms=max(last_received_ms, excluded.last_received_ms)",
                [k + (d.min_seq, d.max_seq, d.received, d.lost, d.late, d.first_ts, d.last_ts, d.first_rx, d.last_rx)
                 for k, d in self.delivery.items()])


Store = SQLiteStore  # the foundation's name


def open_store(backend: str, path: str, **kwargs: Any) -> SQLiteStore:
    if backend != "sqlite":
        raise StoreError(f"store backend {backend!r} is not implemented here (PostgreSQL: the scale-out issue)")
    return SQLiteStore(path, **kwargs)

