"""One SimBoard, a scene feeder and a MicroPython kiosk process on the bridge: the tests' kiosk."""
from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from sim import scene
from sim.board.board import SimBoard
from sim.bridge.kiosk_process import KioskProcess
from sim.crowd import LaneView

SUBPAGE_S = 1 / 8


class Rig:
    def __init__(self, tmp_path: Path, broker_port: int, *, checkpoint: str = "cp-upy", kiosk: str = "k1",
                 keepalive_s: int = 6, air_c: float = 22.0, unit_seed: int = 3, telemetry_s: int = 2) -> None:
        self.checkpoint = checkpoint
        self.kiosk = kiosk
        self.air_c = air_c
        config = {"checkpoint": checkpoint, "kiosk": kiosk, "lane": "L1", "dir": "in", "broker_host": "127.0.0.1",
                  "broker_port": broker_port, "keepalive_s": keepalive_s, "telemetry_s": telemetry_s,
                  "warmup_ms": 500}
        self.board = SimBoard(tmp_path / "kiosks" / kiosk, config, unit_seed=unit_seed, air_c=air_c)
        self.view = LaneView(air_c=air_c, seed=unit_seed)
        self.proc = KioskProcess(self.board, tmp_path / "kiosks" / (kiosk + ".micropython.log"), kiosk=kiosk)
        self._stop = threading.Event()
        self._feeder = threading.Thread(target=self._feed, name="scene", daemon=True)

    def _feed(self) -> None:
        """Keep the register-level MLX90640 looking at the lane: a new noisy render per subpage."""
        while not self._stop.is_set():
            self.board.set_scene(self.view.render(), self.air_c)
            self._stop.wait(SUBPAGE_S)

    def start(self) -> Rig:
        self.board.set_scene(self.view.render(), self.air_c)
        self._feeder.start()
        self.proc.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.proc.close()
        if self._feeder.is_alive():
            self._feeder.join(2)

    def person(self, core_c: float, seed: int = 5, distance_m: float = 0.6) -> scene.Person:
        return scene.random_scene(seed=seed, core_c=core_c, air_c=self.air_c, distance_m=distance_m).people[0]

    def events(self, etype: str | None = None) -> list[dict[str, Any]]:
        return [e for e in list(self.board.ledger) if etype is None or e["type"] == etype]

    def shown(self) -> list[str]:
        return self.board.outputs.shown()

    def alive_and_reporting(self) -> bool:
        return self.proc.alive and self.proc.server.client_connected


def stored_events(db: Path, kiosk: str) -> list[dict[str, Any]]:
    """The gateway's stored events of one kiosk (type, result, seq), read-only."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        rows = con.execute("SELECT type, result, epoch, seq FROM events WHERE kiosk=? ORDER BY seq", (kiosk,))
        return [{"type": t, "result": r, "epoch": e, "seq": s} for t, r, e, s in rows]
    finally:
        con.close()
