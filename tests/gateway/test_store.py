"""The SQLite store on real files: in-place migration of a v1 file, dedup, dead letters, delivery
accounting and epochs, a clean error for a newer schema."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gateway.store import SCHEMA_V1, SCHEMA_VERSION, Accepted, Rejected, SQLiteStore, StoreError
from kiosk import protocol
from tests.gateway.helpers import T0, fault, online, screening

CP = "cp-st"


def make_v1_file(path: Path) -> None:
    """A store exactly as the foundation's store.py wrote it (schema v1, user_version 0)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.executescript(SCHEMA_V1)
    for seq in (0, 1, 3):
        body = screening(seq, T0 + seq * 1000, "fever" if seq == 3 else "pass", holder=f"h{seq}")
        db.execute("INSERT INTO events VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                   (CP, "k1", "e1", seq, "screening", body["result"], "L1", "in", body["ts"], "kiosk", body["ts"] + 5,
                    json.dumps(body, separators=(",", ":"))))
        db.execute("INSERT INTO counts VALUES (?,?,?,1) ON CONFLICT(checkpoint, type, result) DO UPDATE SET n = n + 1",
                   (CP, "screening", body["result"]))
    db.execute("INSERT INTO kiosks VALUES (?,?,?,?,?,?,?,?,?,?,?)",
               (CP, "k1", "online", "1.0", "b", "e1", 1, "abcd1234", T0, T0, None))
    db.execute("INSERT INTO rejects VALUES ('not_json', 4)")
    db.commit()
    db.close()


def test_v1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_v1_file(path)
    store = SQLiteStore(path)
    assert store.migrated == (1, SCHEMA_VERSION)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.event_count() == 3 and store.rejects() == {"not_json": 4}
    assert store.summary()[CP]["results"] == {"fever": 1, "pass": 2}
    assert [e["seq"] for e in store.trace_holder("h3", 0, 2**62)] == [3], "holder_ref backfilled"
    day = store.aggregates(CP, "2026-01-01")
    assert day["total"]["screened"] == 3 and day["total"]["color:green"] == 3, "aggregates backfilled"
    d = store.delivery(CP)[0]
    assert (d["min_seq"], d["max_seq"], d["received"], d["missing"]) == (0, 3, 3, 1)
    assert store.seq_gaps(CP, "k1", "e1") == [(2, 2)]
    plan = " ".join(r[3] for r in store._db.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM events WHERE holder_ref='h1' AND ts_ms BETWEEN 0 AND 5"))
    assert "events_holder" in plan
    # The upgraded file takes new traffic, and opens again without migrating.
    res = store.write_batch([Accepted(CP, "k1", "event", screening(2, T0 + 2000), T0 + 3000)])
    assert res.outcome["stored"] == 1 and store.delivery(CP)[0]["missing"] == 0
    store.close()
    again = SQLiteStore(path)
    assert again.migrated == (SCHEMA_VERSION, SCHEMA_VERSION) and again.event_count() == 4
    again.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SQLiteStore(path)


def test_pragmas_for_power_loss(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db")
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert store._db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    store.close()


def test_dead_letters_bounded_and_never_for_verify(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "d.db", dead_letter_max=5, dead_letter_payload_max=10)
    items = [Rejected("not_json", "x", f"screening/v1/{CP}/k1/event", b"garbage-%03d-and-more" % i, T0 + i)
             for i in range(20)]
    items.append(Rejected("bad_type", "", f"screening/v1/{CP}/k1/verify", None, T0))
    items.append(Rejected("bad_type", "", f"screening/v1/{CP}/k1/verdict", b"raw code!", T0))
    store.write_batch(items)
    dead = store.dead_letters()
    assert len(dead) == 5 and [d["payload_head"] for d in dead][0] == "garbage-01"
    assert dead[0]["size"] == len(b"garbage-019-and-more")
    assert not [d for d in dead if "verif" in d["topic"] or "verdict" in d["topic"]]
    assert store.rejects() == {"not_json": 20, "bad_type": 2}
    raw = store._db.execute("SELECT count(*) FROM dead_letters WHERE payload LIKE '%raw code%'").fetchone()[0]
    assert raw == 0
    store.close()


def test_delivery_gaps_lost_late_and_epochs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "e.db", late_after_ms=60_000)
    w = store.write_batch
    w([Accepted(CP, "k1", "status", online(), T0)])
    # e1: 0,1,2 then 5 (3,4 lost), a fault saying 2 records were not kept, one event 10 min late.
    res = w([Accepted(CP, "k1", "event", screening(s, T0 + s * 1000), T0 + s * 1000) for s in (0, 1, 2, 5)]
            + [Accepted(CP, "k1", "event", fault(6, T0 + 6000, "records_full", lost=2), T0 + 6000),
               Accepted(CP, "k1", "event", screening(7, T0 + 7000), T0 + 600_000)])
    assert res.outcome["stored"] == 6
    # The same batch again: all duplicates, nothing counted twice, no alert twice.
    again = w([Accepted(CP, "k1", "event", screening(s, T0 + s * 1000), T0 + 9000) for s in (0, 1, 2, 5)]
              + [Accepted(CP, "k1", "event", fault(6, T0 + 6000, "records_full", lost=2), T0 + 9000)])
    assert again.outcome["duplicates"] == 5 and again.alerts == []
    d = store.delivery(CP)[0]
    assert (d["missing"], d["lost_reported"], d["late"], d["received"]) == (2, 2, 1, 6)
    assert store.seq_gaps(CP, "k1", "e1") == [(3, 4)]
    assert store.stat("duplicates") == 5
    # A reflash: a new epoch after the old one ended -> new_epoch, no conflict.
    res = w([Accepted(CP, "k1", "event", screening(0, T0 + 20_000, epoch="e2"), T0 + 20_000)])
    assert [a["kind"] for a in res.alerts] == ["new_epoch"]
    assert res.alerts[0]["context"]["previous"] == ["e1"]
    # Two boards under one id: e1 events keep coming, interleaved with e2 -> conflict, once.
    res = w([Accepted(CP, "k1", "event", screening(8, T0 + 25_000), T0 + 25_000),
             Accepted(CP, "k1", "event", screening(1, T0 + 26_000, epoch="e2"), T0 + 26_000),
             Accepted(CP, "k1", "event", screening(9, T0 + 27_000), T0 + 27_000)])
    assert [a["kind"] for a in res.alerts] == ["epoch_conflict"]
    assert res.alerts[0]["context"]["epochs"] == ["e1", "e2"]
    # After a restart the epochs are known from the table, not from memory.
    store.close()
    store = SQLiteStore(tmp_path / "e.db")
    res = store.write_batch([Accepted(CP, "k1", "event", screening(2, T0 + 28_000, epoch="e2"), T0 + 28_000)])
    assert res.alerts == []
    store.close()


def test_batch_rolls_back_as_a_whole(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "r.db")
    bad = screening(1, T0)
    bad["seq"] = 2**70  # sqlite3 cannot bind it: the whole batch must roll back
    with pytest.raises(OverflowError):
        store.write_batch([Accepted(CP, "k1", "event", screening(0, T0), T0), Accepted(CP, "k1", "event", bad, T0)])
    assert store.event_count() == 0 and store.summary() == {}
    assert store.write_batch([Accepted(CP, "k1", "event", screening(0, T0), T0)]).outcome["stored"] == 1
    assert store.delivery(CP)[0]["received"] == 1
    store.close()


def test_manual_screening_ids(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "m.db")
    body, res = store.record_manual(CP, "L1", "in", "pass", 36.6, "nurse", T0, T0, holder_ref="hm")
    body2, _ = store.record_manual(CP, "L1", "in", "refused", None, "nurse", T0, T0)
    assert body["epoch"] == body2["epoch"] and body["epoch"].startswith("gw") and body2["seq"] == body["seq"] + 1
    assert store.event(CP, protocol.GATEWAY_ID, body["epoch"], 0)["holder_ref"] == "hm"
    assert store.delivery(CP) == [], "no delivery accounting for hand-entered records"
    assert store.aggregates(CP, "2026-01-01")["total"]["manual"] == 2
    store.close()
