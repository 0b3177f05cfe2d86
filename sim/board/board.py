"""SimBoard: what App(board) needs, built from simulated devices instead of `machine`.

The sensor bus carries the register-level MLX90640 and SHT31 emulators (the firmware's own
drivers talk to them), unless the board is built with `fast_frames`, the frame-level fast path
for large runs, which hands the app whole frames from the same scene renderer.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from sim.board.clock import SimClock
from sim.board.fs import HostFS
from sim.board.i2c import I2C
from sim.board.network import SimNetwork
from sim.board.outputs import Outputs
from sim.board.uart import SimUART
from sim.devices.frame_sensor import FrameSensor
from sim.devices.mlx90640 import MLX90640Emulator
from sim.devices.sht31 import SHT31Emulator

BOARDS = Path(__file__).resolve().parents[2] / "hardware" / "boards"
SKIN_EMISSIVITY = 0.98  # what the firmware's driver assumes; the emulator must invert with the same


def load_profile(name: str) -> dict[str, Any]:
    path = BOARDS / (name + ".json")
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in BOARDS.glob("*.json")))
        raise ValueError(f"unknown board profile {name!r} (known: {known})")
    profile: dict[str, Any] = json.loads(path.read_text())
    return profile


class SimWDT:
    def __init__(self, timeout_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout_ms = timeout_ms
        self._clock = clock
        self.fed = clock()
        self.feeds = 0

    def feed(self) -> None:
        self.fed = self._clock()
        self.feeds += 1

    def expired(self) -> bool:
        return (self._clock() - self.fed) * 1000 > self.timeout_ms


class SimBoard:
    def __init__(self, fs_root: Path, config: dict[str, Any], profile: str = "esp32-devkitc-v4", *,
                 unit_seed: int = 0, air_c: float = 20.0, fast_frames: Callable[[], Sequence[float]] | None = None,
                 clock: SimClock | None = None, fs: Any = None, factory_calibrated: bool = True) -> None:
        self.profile = load_profile(profile)
        self.fs = fs if fs is not None else HostFS(fs_root)
        with self.fs.open("config.json", "w") as f:
            f.write(json.dumps(config))
        self.clock = clock or SimClock()
        self.network = SimNetwork()
        self.outputs = Outputs(clock=self.clock.monotonic)
        self.watchdog: SimWDT | None = None
        self.ledger: list[dict[str, Any]] = []  # ground truth: every event the firmware created
        bus = self.profile["i2c"]["sensor"]
        self.i2c_sensor = I2C(bus["id"], scl=bus["scl"], sda=bus["sda"], freq=bus.get("eeprom_hz", 400_000))
        self.mlx = MLX90640Emulator.unit(unit_seed, mode="timed", clock=self.clock.monotonic, air_c=air_c,
                                         read_emissivity=SKIN_EMISSIVITY, read_reflected_c=air_c)
        if factory_calibrated:
            # Each unit's offset (datasheet: up to +-1 degC) was measured against a blackbody at
            # the factory and is corrected; per-pixel spread and slow drift remain.
            self.mlx.bias_c = 0.0
        self.air = SHT31Emulator(mode="timed", clock=self.clock.monotonic, temp_c=air_c)
        self.i2c_sensor.attach(self.mlx)
        self.i2c_sensor.attach(self.air)
        self._fast = FrameSensor(fast_frames, clock=self.clock.monotonic) if fast_frames is not None else None
        if self._fast is not None:
            self.thermal_sensor = lambda: self._fast  # the app checks for this attribute
        baud = self.profile["uart"]["scanner"]["baud"]
        self.uarts = {"scanner": SimUART(baud)}

    def set_scene(self, temps: Sequence[float], air_c: float) -> None:
        """What the sensor sees now, and the air around the kiosk."""
        self.mlx.set_scene(temps)
        self.mlx.air_c = air_c
        self.mlx.read_reflected_c = air_c
        self.air.temp_c = air_c

    def i2c(self, name: str, freq: int) -> I2C:
        if name != "sensor":
            raise ValueError(f"no I2C bus {name!r} on this board")
        self.i2c_sensor.init(freq=freq)
        return self.i2c_sensor

    def uart(self, name: str) -> SimUART:
        return self.uarts[name]

    async def open_connection(self, host: str, port: int) -> Any:
        return await self.network.open_connection(host, port)

    def wdt(self, timeout_ms: int) -> SimWDT:
        self.watchdog = SimWDT(timeout_ms, self.clock.monotonic)
        return self.watchdog

    def led(self, rgb: tuple[int, int, int]) -> None:
        self.outputs.record(self.outputs.led, tuple(rgb))

    def tone(self, freq_hz: int) -> None:
        self.outputs.record(self.outputs.tone, freq_hz)

    def show(self, line1: str, line2: str) -> None:
        self.outputs.record(self.outputs.display, (line1, line2))

    def free_mem(self) -> int:
        return 110_000  # an ESP32 without PSRAM, after MicroPython and the app are loaded

    def rssi(self) -> int | None:
        return -58 if self.network.up else None
