"""Test rigs: a simulated bus with the emulators attached, a virtual clock, scenes."""
from __future__ import annotations

from array import array
from typing import Optional, Sequence

import numpy as np

from kiosk.mlx90640 import MLX90640
from sim.board.i2c import I2C
from sim.devices.mlx90640 import MLX90640Emulator


class VirtualClock:
    """Seconds that only move when someone sleeps: drives 'timed' emulators without real sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept_ms = 0

    def __call__(self) -> float:
        return self.now

    def sleep_ms(self, ms: int) -> None:
        self.slept_ms += ms
        self.now += ms / 1000


def face_scene(background_c: float, face_lo: float = 33.0, face_hi: float = 37.0) -> np.ndarray:
    """A background with a face-sized warm patch grading from face_lo to face_hi."""
    scene = np.full((24, 32), float(background_c))
    rows, cols = slice(5, 17), slice(11, 21)
    grad = np.linspace(face_lo, face_hi, 12)[:, None] * np.ones((1, 10))
    scene[rows, cols] = grad
    return scene.ravel()


def rig(eeprom: Optional[Sequence[int]] = None, *, emu: Optional[MLX90640Emulator] = None,
        clock: Optional[VirtualClock] = None, **driver_kw: object) -> tuple[I2C, MLX90640Emulator, MLX90640]:
    """Bus at 400 kHz with an emulator; driver begun; bus raised to 1 MHz for frames (as the app does)."""
    bus = I2C(0, freq=400_000)
    emu = emu or MLX90640Emulator(eeprom, clock=clock)
    bus.attach(emu)
    driver_kw.setdefault("sleep_ms", clock.sleep_ms if clock else (lambda ms: None))
    drv = MLX90640(bus, **driver_kw)  # type: ignore[arg-type]
    drv.begin()
    bus.init(freq=1_000_000)
    return bus, emu, drv


def new_frame() -> array:
    return array("f", [float("nan")] * 768)
