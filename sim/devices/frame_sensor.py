"""Frame-level fast path for the thermal sensor: whole frames in degC, no registers.

It offers the same `poll(frame)` / `ta` / `vdd` interface as the firmware's MLX90640 driver, so
the app cannot tell them apart; large simulated runs use it, register-level runs use the
emulator. Both take their frames from the same scene renderer. Faults: `fail_with` makes every
poll raise, like an unplugged sensor.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence


class FrameSensor:
    def __init__(self, render: Callable[[], Sequence[float]], frame_hz: float = 4.0, chip_ta: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._render = render
        self._clock = clock  # seconds; a virtual clock in accelerated runs
        self._period = 1.0 / frame_hz  # 8 Hz subpages in chess mode = 4 full frames/s
        self._next = clock()
        self.ta = chip_ta
        self.vdd = 3.3
        self.fail_with: Exception | None = None
        self.frames = 0

    def poll(self, frame, pixels=None) -> bool:  # type: ignore[no-untyped-def]
        if self.fail_with is not None:
            raise self.fail_with
        now = self._clock()
        if now < self._next:
            return False
        self._next = max(self._next + self._period, now - self._period)
        values = self._render()
        for i in range(len(frame)) if pixels is None else pixels:
            frame[i] = values[i]
        self.frames += 1
        return True
