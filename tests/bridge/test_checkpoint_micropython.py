"""A checkpoint with one kiosk as a real MicroPython process beside an in-process one: the store equals
the union of the ledgers (the MicroPython kiosk's arrives over the bridge), progress() counts both."""
from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.store import Reader
from sim.checkpoint import Checkpoint
from tests.services import GatewayProc, async_wait_until, wait_until


async def _run(cp: Checkpoint, gateway: GatewayProc) -> dict[str, int]:
    await cp.start()
    try:
        await async_wait_until(lambda: cp.progress()["kiosks_up"] == 2, 15, "both kiosks online")
        await cp.traffic(duration_s=5)
        progress = cp.progress()
    finally:
        await cp.stop()
    return progress


def test_mixed_checkpoint_delivers_exactly_once(tmp_path: Path, gateway: GatewayProc) -> None:
    cp = Checkpoint("cp-mix", 2, seed=11, broker_port=gateway.broker_port, run_dir=tmp_path, rate_per_h=3600,
                    warmup_ms=500, micropython=1)
    progress = asyncio.run(_run(cp, gateway))
    upy, native = cp.kiosks
    assert upy.proc is not None and upy.app is None and native.app is not None
    assert upy.proc.returncode == 0, upy.proc.log_text()
    assert progress["people"] == sum(len(k.truth) for k in cp.kiosks) and progress["events"] > 0
    expected = cp.ledger_keys()
    assert {e["type"] for e in upy.board.ledger} >= {"boot", "screening"}, [e["type"] for e in upy.board.ledger]
    wait_until(lambda: gateway.get("/api/events/count")["events"] >= len(expected), 15, "all events stored")
    stored = Reader(tmp_path / "gateway.db").event_keys()
    assert len(stored) == len(set(stored)) and set(stored) == expected
    wait_until(lambda: all(k["state"] == "offline" for k in gateway.get("/api/kiosks")), 10, "both said goodbye")
