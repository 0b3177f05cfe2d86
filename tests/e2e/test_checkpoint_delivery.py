"""Every event a kiosk creates is stored exactly once: duplicates and a gateway crash included."""
from __future__ import annotations

import asyncio
from pathlib import Path

from sim.checkpoint import Checkpoint
from tests.services import GatewayProc, async_wait_until, wait_until
from gateway.store import Reader


async def _run(cp: Checkpoint, gateway: GatewayProc) -> None:
    await cp.start()
    traffic = asyncio.create_task(cp.traffic(duration_s=6))
    # Mid-run: one kiosk republishes events it already had acknowledged (as after a power cut
    # before its ack cursor was saved)...
    await async_wait_until(lambda: gateway.get("/api/events/count")["events"] >= 8, 20, "first events stored")
    replayed = cp.kiosks[0].app.outbox.replay(3)
    cp.kiosks[0].app.link.poke()
    assert replayed >= 1
    # ...and the gateway dies without a goodbye while traffic goes on, then comes back.
    gateway.restart(kill=True)
    await traffic
    await cp.stop()


def test_store_equals_union_of_kiosk_ledgers(tmp_path: Path, gateway: GatewayProc) -> None:
    cp = Checkpoint("cp-e2e", 4, seed=7, broker_port=gateway.broker_port, run_dir=tmp_path, rate_per_h=3600)
    asyncio.run(_run(cp, gateway))
    expected = cp.ledger_keys()
    assert all(not k.app.outbox.depth() for k in cp.kiosks), "every kiosk drained its outbox"
    wait_until(lambda: gateway.get("/api/events/count")["events"] >= len(expected), 20, "all events stored")
    reader = Reader(tmp_path / "gateway.db")
    stored = reader.event_keys()
    assert len(stored) == len(set(stored)), "no event stored twice"
    assert set(stored) == expected
    assert reader.stat("duplicates") >= 1, "the forced republish reached the gateway and was dropped"
    kinds = {e["type"] for k in cp.kiosks for e in k.board.ledger}
    assert {"boot", "screening"} <= kinds
    summary = gateway.get("/api/summary")["cp-e2e"]
    assert summary["events"] == len(expected)
    assert summary["screened"] == sum(1 for k in cp.kiosks for e in k.board.ledger if e["type"] == "screening")
