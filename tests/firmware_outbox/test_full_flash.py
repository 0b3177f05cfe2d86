"""A full flash: the kiosk App (in-process, unmodified firmware) on a small simulated littlefs with
no broker reachable keeps screening when the outbox budget is used up: append() refuses, counts it
in `refused`, the display says "records full", at least 10% of the partition stays free, and the
app's tasks keep running."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from kiosk import protocol
from kiosk.app import App
from sim.board.board import SimBoard
from sim.board.flash import FlashDevice, LittleFSFlash
from sim.broker import free_port


def _fields(i: int) -> dict[str, Any]:
    code = protocol.code_info("health", "green", "%032x" % (i + 1))
    return {"result": "pass", "measured": "pass", "temp_c": 36.5, "skin_c": 34.25, "ambient_c": 18.0,
            "distance_cm": 55, "code": code, "paired": True, "in_range": True, "uncertainty_c": 0.2, "people": 1}


async def _scenario(tmp_path: Path) -> dict[str, Any]:
    flash = LittleFSFlash(FlashDevice(160 * 1024))
    config = {"checkpoint": "cp-full", "kiosk": "k1", "lane": "L1", "dir": "in", "broker_host": "127.0.0.1",
              "broker_port": free_port(), "keepalive_s": 10, "telemetry_s": 5}
    board = SimBoard(tmp_path / "unused", config, fs=flash)
    app = App(board)
    task = asyncio.create_task(app.run())
    await asyncio.sleep(0.2)
    kept = refused = 0
    ui_at_refusal = None
    for i in range(3000):
        app.emit(protocol.SCREENING, _fields(i))
        if app.outbox.refused > refused:
            refused = app.outbox.refused
            ui_at_refusal = app.ui.state  # emit() sets it; the sensor loop may repaint it later
        else:
            kept += 1
        if i % 100 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.3)
    alive = not task.done()
    state = ui_at_refusal
    free = flash.statvfs()
    out = {"kept": kept, "refused": app.outbox.refused, "depth": app.outbox.depth(), "ui": state, "alive": alive,
           "free_pct": 100 * free[3] / free[2], "seqs": [e["seq"] for e in board.ledger]}
    await app.stop(drain_s=0)
    await asyncio.wait([task], timeout=5)
    return out


def test_full_flash_refuses_counts_and_keeps_running(tmp_path: Path) -> None:
    got = asyncio.run(_scenario(tmp_path))
    assert got["refused"] > 0
    assert got["depth"] + got["refused"] == len(got["seqs"]), "every event queued or counted as refused"
    assert got["ui"] == "records full"
    assert got["alive"], "the app keeps running"
    assert got["free_pct"] >= 10
    assert got["seqs"] == sorted(set(got["seqs"])), "seq keeps counting through refusals (the gap is explained)"
    print(f"\nfull flash: {got['depth']} queued, {got['refused']} refused, {got['free_pct']:.1f}% free")
