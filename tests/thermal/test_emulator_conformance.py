"""Generic conformance sweep (Zephyr style): every emulated sensor across its range.

Each entry: build the emulator on a bus with its firmware driver, set a value in real units
through the emulator's backend, read it with the driver, compare within the tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from kiosk.sht31 import SHT31
from sim.board.i2c import I2C
from sim.devices.sht31 import SHT31Emulator
from sim.devices.mlx90640_eeprom import generate_eeprom
from tests.thermal.rigs import new_frame, rig


@dataclass
class Sensor:
    name: str
    make: Callable[[], Callable[[float], float]]   # returns set-then-read(value) -> max abs error
    points: list[float]
    tolerance: float


def mlx_uniform():
    _, emu, drv = rig(generate_eeprom(31))
    frame = new_frame()

    def set_read(t: float) -> float:
        emu.set_scene(np.full(768, t))
        drv.read(frame)
        return float(np.max(np.abs(np.asarray(frame) - t)))
    return set_read


def mlx_chip_ta():
    _, emu, drv = rig(generate_eeprom(32))
    frame = new_frame()

    def set_read(air: float) -> float:
        emu.air_c = air
        emu.set_scene(np.full(768, 30.0))
        drv.read(frame)
        return abs(drv.ta - emu.chip_ta_c)
    return set_read


def sht31_temp():
    bus = I2C()
    emu = bus.attach(SHT31Emulator())
    drv = SHT31(bus, sleep_ms=lambda ms: None)

    def set_read(t: float) -> float:
        emu.temp_c = t
        return abs(drv.read()[0] - t)
    return set_read


def sht31_rh():
    bus = I2C()
    emu = bus.attach(SHT31Emulator())
    drv = SHT31(bus, sleep_ms=lambda ms: None)

    def set_read(rh: float) -> float:
        emu.rh = rh
        return abs(drv.read()[1] - rh)
    return set_read


SENSORS = [
    # object range of the part is -40..300 degC (section 1); 0.3 covers word quantization
    Sensor("mlx90640-object", mlx_uniform, list(np.linspace(-40, 300, 18)), 0.3),
    # die temperature over the operating range -40..85 degC (air + 5 degC self-heating)
    Sensor("mlx90640-ta", mlx_chip_ta, list(np.linspace(-40, 75, 8)), 0.05),
    Sensor("sht31-temperature", sht31_temp, list(np.linspace(-40, 125, 12)), 0.01),
    Sensor("sht31-humidity", sht31_rh, list(np.linspace(0, 100, 11)), 0.01),
]


@pytest.mark.parametrize("sensor", SENSORS, ids=[s.name for s in SENSORS])
def test_sweep(sensor: Sensor):
    set_read = sensor.make()
    errors = {float(p): set_read(float(p)) for p in sensor.points}
    bad = {p: e for p, e in errors.items() if not e <= sensor.tolerance}
    assert not bad, bad
