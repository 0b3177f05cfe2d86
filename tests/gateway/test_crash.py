"""Acceptance: the gateway process killed with SIGKILL at random moments during a burst, and down
while 8 kiosks publish >= 3,000 events: every event the broker PUBACKed is stored exactly once.
Real mosquitto (persistent session), real paho publishers, the real `python -m gateway run`."""
from __future__ import annotations

import random
import threading
import time
from pathlib import Path

from gateway.store import Reader
from kiosk import protocol
from tests.gateway.helpers import Publisher, screening
from tests.services import GatewayProc, wait_until

CP = "cp-crash"


def burst(port: int, kiosk: str, n: int, rate_per_s: float, ts0: int, out: dict[str, set[int]]) -> None:
    pub = Publisher(port, kiosk)
    mids: dict[int, int] = {}
    topic = protocol.topic(CP, kiosk, protocol.EVENT)
    for seq in range(n):
        mids[pub.publish(topic, protocol.encode(screening(seq, ts0 + seq, holder=f"{kiosk}-{seq}")))] = seq
        if rate_per_s:
            time.sleep(1 / rate_per_s)
    wait_until(lambda: len(pub.acked) == n, 30, f"{kiosk}: every publish PUBACKed")
    out[kiosk] = {mids[m] for m in pub.acked}
    pub.close()


def stored_keys(run_dir: Path) -> list[tuple[str, str, str, int]]:
    with Reader(run_dir / "gateway.db") as r:
        return r.event_keys()


def test_kill_9_at_random_moments_during_a_burst(tmp_path: Path, gateway: GatewayProc) -> None:
    rng = random.Random(9)
    acked: dict[str, set[int]] = {}
    ts0 = int(time.time() * 1000)
    threads = [threading.Thread(target=burst, args=(gateway.broker_port, f"k{i}", 500, 160, ts0, acked))
               for i in range(8)]
    for t in threads:
        t.start()
    kills = 0
    while any(t.is_alive() for t in threads) and kills < 3:
        time.sleep(rng.uniform(0.2, 0.9))
        gateway.restart(kill=True)  # SIGKILL: no goodbye, no flush, mid-transaction for all we know
        kills += 1
    for t in threads:
        t.join(60)
    assert kills >= 2 and len(acked) == 8
    expected = {(CP, k, "e1", s) for k, seqs in acked.items() for s in seqs}
    assert len(expected) == 4000
    wait_until(lambda: gateway.get("/api/events/count")["events"] >= len(expected), 60, "every acked event stored")
    keys = stored_keys(tmp_path)
    assert len(keys) == len(set(keys)) and set(keys) == expected
    summary = gateway.get("/api/summary")[CP]
    assert summary["screened"] == len(expected), "counters match the events: nothing counted twice"
    delivery = gateway.get(f"/api/delivery?checkpoint={CP}")
    assert all(d["missing"] == 0 for d in delivery)
    print(f"{kills} kills; duplicates dropped: {gateway.get('/api/events/count')['duplicates']}")


def test_gateway_down_while_8_kiosks_publish_3200_events(tmp_path: Path, gateway: GatewayProc) -> None:
    gateway.proc.kill()
    gateway.proc.wait()
    acked: dict[str, set[int]] = {}
    ts0 = int(time.time() * 1000)
    threads = [threading.Thread(target=burst, args=(gateway.broker_port, f"k{i}", 400, 0, ts0, acked))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(len(s) for s in acked.values()) == 3200
    t0 = time.monotonic()
    gateway.restart(kill=False)
    wait_until(lambda: gateway.get("/api/events/count")["events"] >= 3200, 60, "the queued events after restart")
    print(f"3200 queued events stored {time.monotonic() - t0:.2f} s after the restart")
    keys = stored_keys(tmp_path)
    assert len(keys) == 3200 and set(keys) == {(CP, k, "e1", s) for k, seqs in acked.items() for s in seqs}
