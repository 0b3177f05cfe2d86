"""Every sensor fault becomes a `fault` event and "Manual screening" on the display - never a
made-up temperature - and the kiosk screens again once the sensor is back. Offline: no broker
listens, so this is also the kiosk screening with its link down."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable

import pytest

from sim.board.i2c import nack
from sim.broker import free_port
from sim.checkpoint import Checkpoint, KioskSim
from sim.scene import random_person
from tests.services import async_wait_until

import numpy as np


def faults(k: KioskSim, part: str) -> list[dict[str, Any]]:
    return [e for e in k.board.ledger if e["type"] == "fault" and e["part"] == part]


def screenings(k: KioskSim) -> list[dict[str, Any]]:
    return [e for e in k.board.ledger if e["type"] == "screening"]


def shows(k: KioskSim, text: str) -> bool:
    return bool(k.board.outputs.display) and k.board.outputs.display[-1][1][0] == text


BREAKS: dict[str, tuple[Callable[[KioskSim], None], Callable[[KioskSim], None], str]] = {
    "unplugged": (lambda k: setattr(k.board.mlx, "unplugged", True),
                  lambda k: setattr(k.board.mlx, "unplugged", False), "ENODEV"),
    "nack": (lambda k: setattr(k.board.mlx, "fault_hook", nack()),
             lambda k: setattr(k.board.mlx, "fault_hook", None), "NACK"),
    "stuck_data_ready": (lambda k: setattr(k.board.mlx, "stuck_data_ready", True),
                         lambda k: setattr(k.board.mlx, "stuck_data_ready", False), "no new frame"),
    "frozen": (lambda k: setattr(k.board.mlx, "frozen", True),
               lambda k: setattr(k.board.mlx, "frozen", False), "frozen"),
}


@pytest.mark.parametrize("how", sorted(BREAKS))
def test_thermal_sensor_fault_degrades_and_recovers(tmp_path: Path, how: str) -> None:
    cp = Checkpoint("cp-fault", 1, seed=4, broker_port=free_port(), run_dir=tmp_path, warmup_ms=500)
    k = cp.kiosks[0]
    person = random_person(np.random.default_rng(1), 36.8, distance_m=0.6)
    brk, fix, words = BREAKS[how]

    async def scenario() -> None:
        await cp.start()
        # The lane stays empty while the kiosk warms up and learns its background.
        await async_wait_until(lambda: shows(k, "Offline - screening"), 15, "ready (offline: no broker)")
        k.view.enter(person)
        await async_wait_until(lambda: screenings(k), 15, "a first screening")
        brk(k)
        await async_wait_until(lambda: faults(k, "sensor"), 10, "a sensor fault event")
        await async_wait_until(lambda: shows(k, "Manual screening"), 5, "manual screening shown")
        during = len(screenings(k))
        k.view.leave()
        k.view.enter(person)
        await asyncio.sleep(1.5)  # a person stands at a broken kiosk: nothing may be measured
        assert len(screenings(k)) == during, "no temperature while the sensor is broken"
        fix(k)
        await async_wait_until(lambda: any(f.get("cleared") for f in faults(k, "sensor")), 15, "recovery event")
        k.view.leave()
        await asyncio.sleep(1.0)  # the lane empties; the next person gets measured again
        k.view.enter(person)
        await async_wait_until(lambda: len(screenings(k)) > during, 15, "screening again")
        await cp.stop(drain_s=0)

    asyncio.run(scenario())
    first = faults(k, "sensor")[0]
    assert words in first["detail"], first
    assert len([f for f in faults(k, "sensor") if not f.get("cleared")]) == 1, "one fault per outage"
    for e in screenings(k):
        assert e["result"] in ("pass", "recheck") and 34.5 < e["temp_c"] < 38.0, e


def test_air_sensor_fault_means_no_decisions(tmp_path: Path) -> None:
    cp = Checkpoint("cp-fault", 1, seed=5, broker_port=free_port(), run_dir=tmp_path, warmup_ms=500)
    k = cp.kiosks[0]
    k.board.air.unplugged = True

    async def scenario() -> None:
        await cp.start()
        k.view.enter(random_person(np.random.default_rng(2), 38.6, distance_m=0.6))
        await async_wait_until(lambda: faults(k, "air"), 10, "an air sensor fault")
        await async_wait_until(lambda: shows(k, "Manual screening"), 5, "manual screening shown")
        await asyncio.sleep(1.5)
        await cp.stop(drain_s=0)

    asyncio.run(scenario())
    # Without the air temperature there is no core estimate: invalid at most, never a number.
    assert all(e["result"] == "invalid" and e["temp_c"] is None for e in screenings(k)), screenings(k)
