"""The kiosk's traveller-facing outputs, recorded as timelines the tests and the live view read."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Outputs:
    """LED ring colour, buzzer frequency and display text, each a list of (monotonic s, value)."""
    led: list[tuple[float, Any]] = field(default_factory=list)
    tone: list[tuple[float, int]] = field(default_factory=list)
    display: list[tuple[float, tuple[str, str]]] = field(default_factory=list)
    clock: Callable[[], float] = time.monotonic  # a virtual clock in accelerated runs

    def record(self, timeline: list[tuple[float, Any]], value: Any) -> None:
        timeline.append((self.clock(), value))
        del timeline[:-1000]  # a day of kiosk states would not fit; the recent past is what matters

    def shown(self) -> list[str]:
        """Display first lines in order, consecutive repeats collapsed."""
        out: list[str] = []
        for _, (line1, _line2) in self.display:
            if not out or out[-1] != line1:
                out.append(line1)
        return out
