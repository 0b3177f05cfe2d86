"""Ground truth against the gateway's store: what really happened vs what the system recorded.

    python -m sim compare --truth run/truth.jsonl --db run/gateway.db

Two separate reports:
- delivery: per kiosk and epoch, the events the kiosks created (the truth file's `event`
  records, from their ledgers) against the stored ones: lost (created, not stored), duplicated
  (stored more than once - the dedup key makes it impossible, checked anyway - and redeliveries
  the gateway dropped), seq gaps in the store, explained when no event ever had those seqs (a
  seq block reserved before a power cut, a record refused by a full outbox) or unexplained.
- accuracy: each person is matched to the screening event of their kiosk whose time falls in
  their visit (arrival - 1 s .. arrival + dwell + 4 s, nearest first, each event used once);
  missed fevers (fever, screened `pass`), fevers sent to a recheck, false alarms (no fever,
  screened `fever`), people with no screening, per-lane counts.
"""
from __future__ import annotations

import json
import sqlite3
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BEFORE_MS = 1000
AFTER_MS = 4000


@dataclass
class Delivery:
    created: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    redeliveries_dropped: int = 0
    gaps_explained: int = 0
    gaps_unexplained: int = 0
    lost_keys: list[tuple[str, str, str, int]] = field(default_factory=list)


@dataclass
class Accuracy:
    people: int = 0
    fevers: int = 0
    detected: int = 0
    fever_recheck: int = 0
    missed: int = 0
    fever_unscreened: int = 0
    false_alarms: int = 0
    recheck: int = 0
    unscreened: int = 0
    lanes: dict[str, Counter[str]] = field(default_factory=dict)


def read_truth(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _seq_ranges(seqs: list[int]) -> list[tuple[int, int]]:
    """Missing stretches between the lowest and highest seq: [(first, last), ...]."""
    out = []
    for a, b in zip(seqs, seqs[1:]):
        if b > a + 1:
            out.append((a + 1, b - 1))
    return out


def delivery(truth: list[dict[str, Any]], db: sqlite3.Connection) -> Delivery:
    d = Delivery()
    created = {(r["checkpoint"], r["kiosk"], r["epoch"], r["seq"]) for r in truth if r["rec"] == "event"}
    rows = db.execute("SELECT checkpoint, kiosk, epoch, seq FROM events").fetchall()
    stored = [tuple(r) for r in rows]
    counts = Counter(stored)
    d.created, d.stored = len(created), len(counts)
    d.duplicated = sum(n - 1 for n in counts.values())
    row = db.execute("SELECT n FROM stats WHERE name='duplicates'").fetchone()
    d.redeliveries_dropped = int(row[0]) if row else 0
    d.lost_keys = sorted(created - set(counts))
    d.lost = len(d.lost_keys)
    by_stream: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for cp, k, e, s in counts:
        by_stream[(cp, k, e)].append(s)
    for stream, seqs in by_stream.items():
        for first, last in _seq_ranges(sorted(seqs)):
            for s in range(first, last + 1):
                if stream + (s,) in created:
                    d.gaps_unexplained += 1  # created and not stored: lost (also counted above)
                else:
                    d.gaps_explained += 1  # never created: reserved before a power cut, or refused
    return d


def accuracy(truth: list[dict[str, Any]], db: sqlite3.Connection) -> Accuracy:
    a = Accuracy()
    events: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for cp, k, ts, result in db.execute("SELECT checkpoint, kiosk, ts_ms, result FROM events WHERE type='screening'"):
        events[(cp, k)].append((int(ts), str(result)))
    used: set[tuple[str, str, int]] = set()
    people = sorted((r for r in truth if r["rec"] == "person"), key=lambda r: r["arrived_ms"])
    for p in people:
        key = (p["checkpoint"], p["kiosk"])
        lo, hi = p["arrived_ms"] - BEFORE_MS, p["arrived_ms"] + int(p["dwell_s"] * 1000) + AFTER_MS
        best: tuple[int, int, str] | None = None
        for i, (ts, result) in enumerate(events.get(key, [])):
            if lo <= ts <= hi and key + (i,) not in used:
                dist = abs(ts - p["arrived_ms"])
                if best is None or dist < best[0]:
                    best = (dist, i, result)
        result = None
        if best is not None:
            used.add(key + (best[1],))
            result = best[2]
        lane = a.lanes.setdefault(f"{p['checkpoint']}/{p['lane']}", Counter())
        lane["people"] += 1
        a.people += 1
        if result is None or result == "invalid":
            lane["unscreened"] += 1
        else:
            lane["screened"] += 1
        if result == "fever":
            lane["fever results"] += 1
        if p["fever"]:
            a.fevers += 1
            lane["fevers"] += 1
            if result == "fever":
                a.detected += 1
            elif result == "recheck":
                a.fever_recheck += 1
            elif result == "pass":
                a.missed += 1
            else:
                a.fever_unscreened += 1
        else:
            if result == "fever":
                a.false_alarms += 1
            elif result == "recheck":
                a.recheck += 1
            elif result != "pass":
                a.unscreened += 1
    return a


def compare(truth_path: Path, db_path: Path) -> tuple[Delivery, Accuracy]:
    truth = read_truth(truth_path)
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return delivery(truth, db), accuracy(truth, db)
    finally:
        db.close()


def format_report(d: Delivery, a: Accuracy, faults: int | None = None) -> str:
    lines = [f"delivery: created {d.created}, stored {d.stored}, lost {d.lost}, duplicated {d.duplicated} "
             f"(redeliveries dropped by the gateway: {d.redeliveries_dropped}); seq gaps: "
             f"{d.gaps_explained} explained (never created: reserved before a power cut, or refused), "
             f"{d.gaps_unexplained} unexplained"]
    for key in d.lost_keys[:10]:
        lines.append(f"  lost: {'/'.join(map(str, key))}")
    pct = (100.0 * a.detected / a.fevers) if a.fevers else 100.0
    lines.append(f"accuracy: {a.people} people, {a.fevers} with fever (core >= 37.3): {a.detected} detected "
                 f"({pct:.0f} %), {a.fever_recheck} sent to recheck, {a.missed} missed (screened pass), "
                 f"{a.fever_unscreened} not screened; {a.false_alarms} false alarms, {a.recheck} rechecks and "
                 f"{a.unscreened} not screened among the others")
    for lane, c in sorted(a.lanes.items()):
        lines.append(f"  lane {lane}: {c['people']} people, {c['screened']} screened, {c['fevers']} fevers, "
                     f"{c['fever results']} fever results, {c['unscreened']} not screened")
    if faults is not None:
        lines.append(f"faults injected: {faults}")
    return "\n".join(lines)


def main(truth: str, db: str) -> int:
    d, a = compare(Path(truth), Path(db))
    faults = sum(1 for r in read_truth(Path(truth)) if r["rec"] == "fault")
    print(format_report(d, a, faults))
    return 0 if d.lost == 0 and d.duplicated == 0 else 1
