"""The live view of a running scenario: one redrawn status line on a terminal, plain lines otherwise.

    [########------------]  07:12 of 07:20 local  x48  people 412  screened 398  fevers 9  kiosks up 8/8

On a TTY the line is redrawn in place (at most `refresh_s` apart); when stdout is a file or a
pipe (CI), a plain line is printed every `plain_every_s` of real time instead.
"""
from __future__ import annotations

import time
from typing import TextIO

from sim.runner import Progress

BAR = 24


class LiveView:
    def __init__(self, stream: TextIO, start_min: int, tty: bool | None = None, refresh_s: float = 0.5,
                 plain_every_s: float = 10.0) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.start_min = start_min
        self.every = refresh_s if self.tty else plain_every_s
        self._last = 0.0
        self._drawn = False

    def _clock(self, elapsed_s: float) -> str:
        m = int(self.start_min + elapsed_s / 60) % 1440
        return f"{m // 60:02d}:{m % 60:02d}"

    def line(self, p: Progress) -> str:
        done = int(BAR * p.elapsed_s / p.duration_s) if p.duration_s else BAR
        bar = "#" * done + "-" * (BAR - done)
        return (f"[{bar}] {self._clock(p.elapsed_s)} of {self._clock(p.duration_s)} local  x{p.speed:.0f}  "
                f"people {p.people}  screened {p.screened}  fevers {p.fevers}  queued {p.queued}  "
                f"kiosks up {p.kiosks_up}/{p.kiosks}")

    def update(self, p: Progress, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        self._last = now
        if self.tty:
            self.stream.write("\r\x1b[2K" + self.line(p))
            self._drawn = True
        else:
            self.stream.write(self.line(p) + "\n")
        self.stream.flush()

    def finish(self, p: Progress) -> None:
        self.update(p, force=True)
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
