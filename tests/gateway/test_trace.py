"""Tracing over 28 days of a busy checkpoint, rows generated straight into SQLite: each query < 1 s."""
from __future__ import annotations

import json
import random
import time
from pathlib import Path

from gateway.clock import DAY_MS
from gateway.store import SQLiteStore
from tests.gateway.helpers import T0

CP = "cp-busy"
PER_DAY = 20_000  # passages a day: a busy highway checkpoint, 8 kiosks
DAYS = 28
HOLDERS = 40_000


def fill(store: SQLiteStore, rng: random.Random) -> int:
    body = json.dumps({"v": 1, "type": "screening", "result": "pass", "temp_c": 36.5, "pad": "x" * 150})
    step = DAY_MS // PER_DAY
    holders = [f"h{rng.randrange(HOLDERS)}" for _ in range(PER_DAY * DAYS)]
    rows = ((CP, f"k{i % 8}", "e1", i // 8, "screening", "pass", f"L{i % 4}", "in", T0 + i * step, "kiosk",
             T0 + i * step, body, holders[i], "health", "green", 36.5) for i in range(PER_DAY * DAYS))
    db = store._db
    db.execute("PRAGMA synchronous=OFF")  # a bulk load for the test; the gateway itself never does this
    db.execute("BEGIN")
    db.executemany("INSERT INTO events (checkpoint, kiosk, epoch, seq, type, result, lane, dir, ts_ms, ts_source,"
                   " received_ms, body, holder_ref, code_kind, code_color, temp_c) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   rows)
    db.execute("COMMIT")
    db.execute("PRAGMA synchronous=FULL")
    return PER_DAY * DAYS


def test_tracing_queries_under_a_second_over_28_busy_days(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "busy.db")
    rng = random.Random(28)
    t = time.perf_counter()
    n = fill(store, rng)
    fill_s = time.perf_counter() - t
    q = store.reader()
    worst = 0.0
    for _ in range(20):
        holder = f"h{rng.randrange(HOLDERS)}"
        t = time.perf_counter()
        rows = q.trace_holder(holder, T0, T0 + DAYS * DAY_MS)
        worst = max(worst, time.perf_counter() - t)
        assert all(r["ts_ms"] >= T0 for r in rows)
    assert rows, "holders recur"
    worst_contacts = 0.0
    for _ in range(20):
        at = T0 + rng.randrange(DAYS * DAY_MS)
        t = time.perf_counter()
        near = q.contacts(CP, f"k{rng.randrange(8)}", at, 15)
        worst_contacts = max(worst_contacts, time.perf_counter() - t)
        assert 10 < len(near) < 200
    print(f"{n} rows ({fill_s:.1f} s to generate); holder trace worst {worst * 1000:.1f} ms, "
          f"contacts +-15 min worst {worst_contacts * 1000:.1f} ms")
    assert worst < 1.0 and worst_contacts < 1.0
    q.close()
    store.close()
