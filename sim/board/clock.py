"""The board clock: MicroPython's ticks API plus a wall clock that may not be synced yet."""
from __future__ import annotations

import time


class SimClock:
    """ticks_ms wraps like MicroPython's (30-bit on ESP32) so ticks_diff bugs show up in tests."""

    TICKS_PERIOD = 1 << 30

    def __init__(self, synced: bool = True, offset_ms: int = 0) -> None:
        self._t0 = time.monotonic()
        self.synced = synced
        self.offset_ms = offset_ms  # lets a test start ticks near the wrap point

    def ticks_ms(self) -> int:
        return (int((time.monotonic() - self._t0) * 1000) + self.offset_ms) % self.TICKS_PERIOD

    def ticks_diff(self, a: int, b: int) -> int:
        half = self.TICKS_PERIOD // 2
        return ((a - b + half) % self.TICKS_PERIOD) - half

    def ticks_add(self, a: int, delta: int) -> int:
        return (a + delta) % self.TICKS_PERIOD

    def time_ms(self) -> int | None:
        """UTC Unix ms once the clock is synced (NTP or the gateway), else None."""
        return int(time.time() * 1000) if self.synced else None

    def sleep_ms(self, ms: int) -> None:
        """Blocking, as MicroPython's time.sleep_ms: drivers use it for sub-millisecond waits only."""
        time.sleep(ms / 1000)
