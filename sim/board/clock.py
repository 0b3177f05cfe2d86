"""The board clock: MicroPython's ticks API plus a wall clock that may not be synced yet."""
from __future__ import annotations

import time
from typing import Callable


class SimClock:
    """ticks_ms wraps like MicroPython's (30-bit on ESP32) so ticks_diff bugs show up in tests.

    `monotonic` and `wall` are the time sources (seconds): the host's by default, or a virtual
    clock (sim.vtime) for accelerated runs; `sleep` is what a blocking sleep_ms does.
    """

    TICKS_PERIOD = 1 << 30

    def __init__(self, synced: bool = True, offset_ms: int = 0, *, monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.monotonic = monotonic
        self._wall = wall
        self._sleep = sleep
        self._t0 = monotonic()
        self.synced = synced
        self.offset_ms = offset_ms  # lets a test start ticks near the wrap point
        self._wall_offset_ms = 0  # set_time_ms: the kiosk's RTC need not agree with the host

    def ticks_ms(self) -> int:
        return (int((self.monotonic() - self._t0) * 1000) + self.offset_ms) % self.TICKS_PERIOD

    def ticks_diff(self, a: int, b: int) -> int:
        half = self.TICKS_PERIOD // 2
        return ((a - b + half) % self.TICKS_PERIOD) - half

    def ticks_add(self, a: int, delta: int) -> int:
        return (a + delta) % self.TICKS_PERIOD

    def time_ms(self) -> int | None:
        """UTC Unix ms once the clock is synced (NTP or the gateway), else None."""
        return int(self._wall() * 1000) + self._wall_offset_ms if self.synced else None

    def set_time_ms(self, utc_ms: int) -> None:
        """Set the RTC (from NTP or the gateway): the wall clock is synced from now on."""
        self._wall_offset_ms = utc_ms - int(self._wall() * 1000)
        self.synced = True

    def sleep_ms(self, ms: int) -> None:
        """Blocking, as MicroPython's time.sleep_ms: drivers use it for sub-millisecond waits only."""
        self._sleep(ms / 1000)
