"""SimBoard: what App(board) needs, built from simulated devices instead of `machine`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sim.board.clock import SimClock
from sim.board.fs import HostFS
from sim.board.network import SimNetwork
from sim.board.uart import SimUART

BOARDS = Path(__file__).resolve().parents[2] / "hardware" / "boards"


def load_profile(name: str) -> dict[str, Any]:
    path = BOARDS / (name + ".json")
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in BOARDS.glob("*.json")))
        raise ValueError(f"unknown board profile {name!r} (known: {known})")
    profile: dict[str, Any] = json.loads(path.read_text())
    return profile


class SimBoard:
    def __init__(self, fs_root: Path, config: dict[str, Any], thermal: Any, profile: str = "esp32-devkitc-v4",
                 clock: SimClock | None = None) -> None:
        self.profile = load_profile(profile)
        self.fs = HostFS(fs_root)
        with self.fs.open("config.json", "w") as f:
            json.dump(config, f)
        self.clock = clock or SimClock()
        self.network = SimNetwork()
        self._thermal = thermal
        baud = self.profile["uart"]["scanner"]["baud"]
        self.uarts = {"scanner": SimUART(baud)}
        self.ledger: list[dict[str, Any]] = []  # ground truth: every event the firmware created

    def thermal_sensor(self) -> Any:
        return self._thermal

    def uart(self, name: str) -> SimUART:
        return self.uarts[name]

    async def open_connection(self, host: str, port: int) -> Any:
        return await self.network.open_connection(host, port)
