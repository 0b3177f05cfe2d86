"""Frame-level fast path for the thermal sensor: whole frames in degC, no registers.

It offers the same `read(frame)` / `ta` interface as the firmware's MLX90640 driver, so the
app cannot tell them apart; large simulated runs use it, register-level tests use the
emulator. Faults: `fail_with` makes every read raise, like an unplugged sensor.
"""
from __future__ import annotations

from typing import Callable, Sequence


class FrameSensor:
    def __init__(self, render: Callable[[], Sequence[float]], chip_ta: float = 30.0) -> None:
        self._render = render
        self.ta = chip_ta
        self.vdd = 3.3
        self.fail_with: Exception | None = None
        self.frames = 0

    def read(self, frame, pixels=None) -> None:  # type: ignore[no-untyped-def]
        if self.fail_with is not None:
            raise self.fail_with
        values = self._render()
        indices = range(len(frame)) if pixels is None else pixels
        for i in indices:
            frame[i] = values[i]
        self.frames += 1
