"""One clock for a simulated run: real time, or accelerated virtual time that jumps when idle.

Accelerated mode runs the in-process kiosks on `VirtualEventLoop`, an asyncio selector loop
whose `time()` is the virtual clock. When the loop has nothing ready it would normally sleep
until its next timer; instead it first polls its sockets (unread data is always handled
before time moves) and then *jumps* the clock to that timer. Everything that keeps time in
the run reads the same clock: the firmware (board.clock: ticks_ms, time_ms, sleep_ms - a
blocking sleep_ms advances the clock by its length), the sensor emulators and the frame-level
fast path, the crowd and the fault schedule (asyncio.sleep on the loop), and the gateway
process, which reads the virtual wall clock from a shared 8-byte file (`SharedClockReader`;
see sim/gateway_proc.py).

Guarantee: the clock does not move while `hold()` says a protocol exchange is in flight (a
kiosk waiting for CONNACK, for a PUBACK of an event, or for a verdict). The loop then waits in
real time for the answer from the broker or the gateway with virtual time frozen, so every
timeout in the firmware keeps its meaning and the answer arrives at the same virtual instant
in every run. If an answer does not come within `hold_max_s` of real time (a dead gateway),
the clock runs at real speed (1x) until the exchange resolves or times out - never faster.

Real-time mode uses the host clocks (the loop is asyncio's own), so one code path serves both.
"""
from __future__ import annotations

import asyncio
import mmap
import os
import selectors
import struct
import time
from pathlib import Path
from typing import Any, Callable, Mapping

_FMT = "<q"  # virtual UTC Unix ms, little-endian int64, aligned at offset 0


class VirtualClock:
    """Monotonic and wall seconds for a run; `accelerated` makes them virtual."""

    def __init__(self, start_wall_s: float | None = None, accelerated: bool = True,
                 shared_file: Path | None = None) -> None:
        self.accelerated = accelerated
        self.start_wall_s = time.time() if start_wall_s is None or not accelerated else start_wall_s
        self._t0 = time.monotonic()
        self._mono = 0.0
        self.jumps = 0
        self.jumped_s = 0.0
        self.held_s = 0.0  # real seconds spent waiting on exchanges with virtual time frozen
        self._mm: mmap.mmap | None = None
        if shared_file is not None:
            fd = os.open(shared_file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, 8)
                self._mm = mmap.mmap(fd, 8, access=mmap.ACCESS_WRITE)
            finally:
                os.close(fd)
            self._publish()

    def monotonic(self) -> float:
        """Seconds since the run started."""
        return self._mono if self.accelerated else time.monotonic() - self._t0

    def wall(self) -> float:
        """UTC Unix seconds."""
        return self.start_wall_s + self.monotonic()

    def wall_ms(self) -> int:
        return int(self.wall() * 1000)

    def advance(self, dt_s: float) -> None:
        if dt_s <= 0 or not self.accelerated:
            return
        self._mono += dt_s
        self.jumps += 1
        self.jumped_s += dt_s
        self._publish()

    def sleep(self, dt_s: float) -> None:
        """A blocking sleep (the firmware's sleep_ms): in virtual time it only moves the clock."""
        if self.accelerated:
            self.advance(dt_s)
        else:
            time.sleep(dt_s)

    def _publish(self) -> None:
        if self._mm is not None:
            struct.pack_into(_FMT, self._mm, 0, self.wall_ms())

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None


class SharedClockReader:
    """The gateway side of the shared clock file: `now_ms()` (gateway.clock.Clock) and `now_s()`."""

    def __init__(self, path: Path) -> None:
        with open(path, "rb") as f:
            self._mm = mmap.mmap(f.fileno(), 8, access=mmap.ACCESS_READ)

    def now_ms(self) -> int:
        value: int = struct.unpack_from(_FMT, self._mm, 0)[0]
        return value

    def now_s(self) -> float:
        return self.now_ms() / 1000


class _JumpingSelector(selectors.BaseSelector):
    """Wraps the loop's selector: polls, then jumps the virtual clock instead of sleeping."""

    def __init__(self, clock: VirtualClock, hold_max_s: float) -> None:
        self._inner = selectors.DefaultSelector()
        self._clock = clock
        self.hold: Callable[[], bool] = lambda: False
        self._hold_max_s = hold_max_s
        self._held_since: float | None = None

    # delegation
    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if self.hold():
            # An exchange is in flight: wait for its answer in real time, virtual time frozen...
            t0 = time.monotonic()
            if self._held_since is None:
                self._held_since = t0
            wait = 0.05 if timeout is None else min(timeout, 0.05)
            events = self._inner.select(wait)
            now = time.monotonic()
            self._clock.held_s += now - t0
            if now - self._held_since > self._hold_max_s and timeout is not None:
                # ...but an answer that never comes must not stop the world: run at 1x.
                self._clock.advance(min(now - t0, timeout))
            return events
        self._held_since = None
        if timeout is None:  # no timer at all: only I/O (another thread, another process) can wake us
            return self._inner.select(0.05)
        self._clock.advance(timeout)
        return []


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """An asyncio loop on a VirtualClock: `time()` is virtual and idle time is skipped."""

    def __init__(self, clock: VirtualClock, hold_max_s: float = 2.0) -> None:
        self._jumper = _JumpingSelector(clock, hold_max_s)
        super().__init__(self._jumper)
        self.vclock = clock

    def time(self) -> float:
        return self.vclock.monotonic()

    def set_hold(self, hold: Callable[[], bool]) -> None:
        """hold() -> True while a protocol exchange is in flight (virtual time must not move)."""
        self._jumper.hold = hold


def loop_factory(clock: VirtualClock) -> Callable[[], asyncio.AbstractEventLoop]:
    """For asyncio.Runner(loop_factory=...): a virtual loop when accelerated, asyncio's own otherwise."""
    if clock.accelerated:
        return lambda: VirtualEventLoop(clock)
    return asyncio.new_event_loop
