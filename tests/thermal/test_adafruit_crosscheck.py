"""Independent check: the PyPI adafruit-circuitpython-mlx90640 driver reads the emulator back.

That driver was written by others from the maker's code, so agreement means the emulator's
registers follow the datasheet and not just our own reading of it.
"""
from __future__ import annotations

import types

import numpy as np
import pytest

import adafruit_mlx90640
from sim.board.i2c import I2C
from sim.devices.mlx90640 import MLX90640Emulator
from sim.devices.mlx90640_eeprom import example_eeprom, generate_eeprom
from tests.thermal.rigs import face_scene

TOL = 0.2
STATUS_POLL_LIMIT = 1000


class BusioAdapter:
    """busio.I2C as adafruit_bus_device uses it, translated to the simulated machine.I2C bus.

    The adafruit driver spins forever while data-ready stays clear: after STATUS_POLL_LIMIT
    status reads in a row without it, this adapter raises TimeoutError instead.
    """

    def __init__(self, bus: I2C) -> None:
        self.bus = bus
        self.empty_status_reads = 0

    def try_lock(self) -> bool:
        return True

    def unlock(self) -> None:
        pass

    def writeto(self, address, buffer, *, start=0, end=None):
        self.bus.transfer(address, bytes(buffer[start:end]), 0)

    def readfrom_into(self, address, buffer, *, start=0, end=None):
        end = len(buffer) if end is None else end
        buffer[start:end] = self.bus.transfer(address, b"", end - start)

    def writeto_then_readfrom(self, address, out_buf, in_buf, *, out_start=0, out_end=None, in_start=0,
                              in_end=None):
        out = bytes(out_buf[out_start:out_end])
        in_end = len(in_buf) if in_end is None else in_end
        data = self.bus.transfer(address, out, in_end - in_start)
        in_buf[in_start:in_end] = data
        if out == b"\x80\x00":
            self.empty_status_reads = 0 if data[1] & 0x08 else self.empty_status_reads + 1
            if self.empty_status_reads > STATUS_POLL_LIMIT:
                raise TimeoutError("MLX90640 data-ready never set")


@pytest.fixture(autouse=True)
def no_library_sleeps(monkeypatch):
    # The library sleeps 1 ms after each register write; the emulator needs no such wait.
    monkeypatch.setattr(adafruit_mlx90640, "time", types.SimpleNamespace(sleep=lambda s: None))


def adafruit_on(emu: MLX90640Emulator):
    # brokenPixels/outlierPixels are class attributes in the library: reset between sensors
    adafruit_mlx90640.MLX90640.brokenPixels = []
    adafruit_mlx90640.MLX90640.outlierPixels = []
    bus = I2C(0, freq=400_000)
    bus.attach(emu)
    adapter = BusioAdapter(bus)
    sensor = adafruit_mlx90640.MLX90640(adapter)
    bus.init(freq=1_000_000)
    return sensor, adapter


CASES = {
    "example-chess": (example_eeprom, True),
    "unit21-tgc-flagged-chess": (lambda: generate_eeprom(21, tgc=0.5, broken=[100], outliers=[650]), True),
    "unit22-interleaved": (lambda: generate_eeprom(22), False),
}


@pytest.mark.parametrize("case", CASES)
def test_adafruit_reads_faces_on_every_background(case):
    make, chess = CASES[case]
    emu = MLX90640Emulator(make())
    sensor, _ = adafruit_on(emu)
    sensor.refresh_rate = adafruit_mlx90640.RefreshRate.REFRESH_8_HZ
    if not chess:
        emu.control &= ~0x1000      # the library has no setter; it reads the pattern per frame
    flagged = set(sensor.brokenPixels) | set(sensor.outlierPixels)
    assert flagged == set(emu.cal.broken + emu.cal.outliers)
    mask = np.ones(768, bool)
    mask[list(flagged)] = False
    worst = 0.0
    for background in (-10, 0, 10, 20, 30, 40):
        scene = face_scene(background)
        emu.air_c = background
        emu.set_scene(scene)
        frame = [0.0] * 768
        sensor.getFrame(frame)      # may hold a subpage measured before the scene changed
        sensor.getFrame(frame)
        err = np.abs(np.asarray(frame) - scene)[mask]
        worst = max(worst, float(err.max()))
        assert err.max() <= TOL, (background, float(err.max()), int(np.argmax(err)))
    print(f"{case}: worst adafruit read-back error {worst:.3f} degC")


def test_adafruit_spin_is_guarded_when_data_ready_is_stuck():
    emu = MLX90640Emulator(generate_eeprom(23))
    sensor, _ = adafruit_on(emu)
    emu.stuck_data_ready = True
    with pytest.raises(TimeoutError):
        sensor.getFrame([0.0] * 768)
