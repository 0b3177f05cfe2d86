"""A simulated checkpoint: kiosks running the unmodified firmware, and their crowds.

Kiosks run in-process under CPython, or (`micropython=N`: the first N) as real MicroPython
processes whose boards reach their SimBoards over the bridge (sim/bridge); the ledger, the
outputs and progress() work the same for both.
"""
from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.app import App
from sim.board.board import SimBoard
from sim.bridge.kiosk_process import KioskProcess
from sim.crowd import Crowd, LaneView
from sim.passes import Issuer

DEFAULT_RATE_PER_H = 720  # one person every 5 s per lane: a busy checkpoint
SUBPAGE_S = 1 / 8  # the sensor's default refresh: the scene is re-rendered as often as it samples


@dataclass
class KioskSim:
    kiosk: str
    lane: str
    direction: str
    board: SimBoard
    view: LaneView
    crowd: Crowd
    app: App | None = None
    proc: KioskProcess | None = None  # set for a kiosk running as a MicroPython process
    task: asyncio.Task[Any] | None = None
    truth: list[dict[str, Any]] = field(default_factory=list)


def lane_layout(n_kiosks: int) -> list[tuple[str, str, str]]:
    """k1 L1 in, k2 L1 out, k3 L2 in, k4 L2 out, ...: two kiosks, in and out, per lane."""
    return [(f"k{i + 1}", f"L{i // 2 + 1}", "in" if i % 2 == 0 else "out") for i in range(n_kiosks)]


class Checkpoint:
    def __init__(self, checkpoint: str, n_kiosks: int, seed: int, broker_port: int, run_dir: Path,
                 keepalive_s: int = 10, rate_per_h: float = DEFAULT_RATE_PER_H, air_c: float = 18.0,
                 telemetry_s: int = 5, fast_frames: bool = False, warmup_ms: int = 3000,
                 micropython: int = 0) -> None:
        self.checkpoint = checkpoint
        self.rate_per_h = rate_per_h
        self.fast_frames = fast_frames
        self.issuer = Issuer("sim-issuer", seed=random.Random(seed).randbytes(32))
        self.kiosks: list[KioskSim] = []
        self.run_dir = run_dir
        self.micropython = micropython
        self._feeders: list[asyncio.Task[None]] = []
        for i, (kiosk, lane, direction) in enumerate(lane_layout(n_kiosks)):
            view = LaneView(air_c=air_c, seed=seed * 1000 + i)
            # The simulated sensor has been powered for a while: a short warm-up, not minutes.
            config = {"checkpoint": checkpoint, "kiosk": kiosk, "lane": lane, "dir": direction,
                      "broker_host": "127.0.0.1", "broker_port": broker_port, "keepalive_s": keepalive_s,
                      "telemetry_s": telemetry_s, "warmup_ms": warmup_ms}
            board = SimBoard(run_dir / "kiosks" / kiosk, config, unit_seed=seed * 100 + i, air_c=air_c,
                             fast_frames=view.render if fast_frames else None)
            self.kiosks.append(KioskSim(kiosk, lane, direction, board, view, Crowd(seed * 7919 + i, self.issuer)))

    async def start(self) -> None:
        for i, k in enumerate(self.kiosks):
            upy = i < self.micropython  # the bridge has no frame-level fast path: register level always
            if upy or not self.fast_frames:
                self._feeders.append(asyncio.create_task(self._feed_scene(k)))
            if upy:
                k.proc = KioskProcess(k.board, self.run_dir / "kiosks" / f"{k.kiosk}.micropython.log", kiosk=k.kiosk)
                await asyncio.to_thread(k.proc.start)
                continue
            k.app = App(k.board)
            k.task = asyncio.create_task(k.app.run())

    @staticmethod
    async def _feed_scene(k: KioskSim) -> None:
        """Keep the register-level sensor looking at the lane (a new noisy render per subpage)."""
        while True:
            k.board.set_scene(k.view.render(), k.view.air_c)
            await asyncio.sleep(SUBPAGE_S)

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
            arrival = k.crowd.next_arrival(int(time.time()))
            k.truth.append(k.crowd.truth(arrival, k.kiosk, round(time.time(), 3), k.view.air_c))
            k.view.enter(arrival.person)
            if arrival.code:
                await asyncio.sleep(0.3)  # they hold their phone up as they step in
                uart.inject(arrival.code.encode() + b"\r\n")
            await asyncio.sleep(arrival.dwell_s)
            k.view.leave()

    async def stop(self, drain_s: float = 15.0) -> None:
        await asyncio.gather(*(k.app.stop(drain_s) for k in self.kiosks if k.app),
                             *(asyncio.to_thread(k.proc.stop, True, drain_s + 5) for k in self.kiosks if k.proc))
        for k in self.kiosks:
            if k.proc:
                k.proc.close()
        for task in self._feeders:
            task.cancel()
        for k in self.kiosks:
            if k.task:
                await asyncio.wait([k.task], timeout=5)

    def ledger_keys(self) -> set[tuple[str, str, str, int]]:
        return {(self.checkpoint, k.kiosk, e["epoch"], e["seq"]) for k in self.kiosks for e in k.board.ledger}

    def progress(self) -> dict[str, int]:
        people = sum(len(k.truth) for k in self.kiosks)
        events = sum(len(k.board.ledger) for k in self.kiosks)
        queued = sum(k.app.outbox.depth() for k in self.kiosks if k.app)
        queued += sum(k.proc.state().get("outbox", 0) for k in self.kiosks if k.proc)
        up = sum(1 for k in self.kiosks if k.app and k.app.link.connected)
        up += sum(1 for k in self.kiosks if k.proc and k.proc.alive and k.proc.state().get("connected"))
        return {"people": people, "events": events, "queued": queued, "kiosks_up": up}
