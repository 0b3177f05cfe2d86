"""A simulated checkpoint: kiosks running the unmodified firmware in-process, and their crowds."""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.app import App
from sim.board.board import SimBoard
from sim.crowd import Crowd, LaneView
from sim.devices.frame_sensor import FrameSensor
from sim.passes import Issuer

DEFAULT_RATE_PER_H = 720  # one person every 5 s per lane: a busy checkpoint


@dataclass
class KioskSim:
    kiosk: str
    lane: str
    direction: str
    board: SimBoard
    view: LaneView
    crowd: Crowd
    app: App | None = None
    task: asyncio.Task[Any] | None = None
    truth: list[dict[str, Any]] = field(default_factory=list)


def lane_layout(n_kiosks: int) -> list[tuple[str, str, str]]:
    """k1 L1 in, k2 L1 out, k3 L2 in, k4 L2 out, ...: two kiosks, in and out, per lane."""
    return [(f"k{i + 1}", f"L{i // 2 + 1}", "in" if i % 2 == 0 else "out") for i in range(n_kiosks)]


class Checkpoint:
    def __init__(self, checkpoint: str, n_kiosks: int, seed: int, broker_port: int, run_dir: Path,
                 keepalive_s: int = 10, rate_per_h: float = DEFAULT_RATE_PER_H, ambient_c: float = 18.0,
                 telemetry_s: int = 5) -> None:
        self.checkpoint = checkpoint
        self.rate_per_h = rate_per_h
        self.issuer = Issuer("sim-issuer", seed=random.Random(seed).randbytes(32))
        self.kiosks: list[KioskSim] = []
        for i, (kiosk, lane, direction) in enumerate(lane_layout(n_kiosks)):
            view = LaneView(background_c=ambient_c, noise=random.Random(seed * 1000 + i))
            config = {"checkpoint": checkpoint, "kiosk": kiosk, "lane": lane, "dir": direction,
                      "broker_host": "127.0.0.1", "broker_port": broker_port, "keepalive_s": keepalive_s,
                      "telemetry_s": telemetry_s}
            board = SimBoard(run_dir / "kiosks" / kiosk, config, FrameSensor(view.render))
            self.kiosks.append(KioskSim(kiosk, lane, direction, board, view, Crowd(seed * 7919 + i, self.issuer)))

    async def start(self) -> None:
        for k in self.kiosks:
            k.app = App(k.board)
            k.task = asyncio.create_task(k.app.run())

    async def traffic(self, duration_s: float) -> None:
        """People arrive at every lane for duration_s; returns when the last one has left."""
        await asyncio.gather(*(self._lane_traffic(k, duration_s) for k in self.kiosks))

    async def _lane_traffic(self, k: KioskSim, duration_s: float) -> None:
        start = time.monotonic()
        uart = k.board.uart("scanner")
        while True:
            await asyncio.sleep(k.crowd.gap_s(self.rate_per_h))
            if time.monotonic() - start >= duration_s:
                return
            person = k.crowd.next_person(int(time.time()))
            k.truth.append(k.crowd.truth(person, k.kiosk, round(time.time(), 3)))
            k.view.person = person
            if person.code:
                await asyncio.sleep(0.3)  # they hold their phone up as they step in
                uart.inject(person.code.encode() + b"\r\n")
            await asyncio.sleep(person.dwell_s)
            k.view.person = None

    async def stop(self, drain_s: float = 15.0) -> None:
        await asyncio.gather(*(k.app.stop(drain_s) for k in self.kiosks if k.app))
        for k in self.kiosks:
            if k.task:
                await asyncio.wait([k.task], timeout=5)

    def ledger_keys(self) -> set[tuple[str, str, str, int]]:
        return {(self.checkpoint, k.kiosk, e["epoch"], e["seq"]) for k in self.kiosks for e in k.board.ledger}

    def progress(self) -> dict[str, int]:
        people = sum(len(k.truth) for k in self.kiosks)
        events = sum(len(k.board.ledger) for k in self.kiosks)
        queued = sum(k.app.outbox.depth() for k in self.kiosks if k.app)
        up = sum(1 for k in self.kiosks if k.app and k.app.link.connected)
        return {"people": people, "events": events, "queued": queued, "kiosks_up": up}
