"""People arriving at a lane: who they are, their true core temperature, their code.

Foundation version: Poisson arrivals, a normal core-temperature distribution with a fever
share, signed passes of several colours, a simple face blob on a uniform background. The
thermal-chain issue brings the physiological scene model; the simulator issue brings
scenarios, weather and accelerated time.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from sim.passes import Issuer

ROWS, COLS = 24, 32


@dataclass
class Person:
    pid: str
    core_c: float
    code: str | None
    code_kind: str | None
    code_color: str | None
    dwell_s: float


@dataclass
class LaneView:
    """What the kiosk's sensor sees right now."""
    background_c: float
    person: Person | None = None
    skin_offset_c: float = 1.6
    noise: random.Random = field(default_factory=random.Random)

    def render(self) -> list[float]:
        frame = [self.background_c + self.noise.gauss(0, 0.1) for _ in range(ROWS * COLS)]
        if self.person is not None:
            skin = self.person.core_c - self.skin_offset_c
            for r in range(6, 14):
                for c in range(12, 20):
                    frame[r * COLS + c] = skin - 1.5 + self.noise.gauss(0, 0.05)
            for r in range(8, 10):  # inner canthi: the hottest spot of a face
                for c in range(14, 18):
                    frame[r * COLS + c] = skin + self.noise.gauss(0, 0.03)
        return frame


class Crowd:
    def __init__(self, seed: int, issuer: Issuer, fever_share: float = 0.05, code_share: float = 0.9) -> None:
        self.rng = random.Random(seed)
        self.issuer = issuer
        self.fever_share = fever_share
        self.code_share = code_share
        self.count = 0

    def next_person(self, now_s: int) -> Person:
        self.count += 1
        rng = self.rng
        core = rng.uniform(37.8, 39.5) if rng.random() < self.fever_share else rng.gauss(36.7, 0.25)
        code = kind = color = None
        if rng.random() < self.code_share:
            kind = "vehicle" if rng.random() < 0.1 else "health"
            color = rng.choices(["green", "yellow", "red"], [0.9, 0.07, 0.03])[0]
            holder = "%018d" % rng.randrange(10**17, 10**18)
            code = self.issuer.issue(holder, kind, color, now_s - 3600, now_s + 86400)
        return Person(f"p{self.count}", round(core, 2), code, kind, color, dwell_s=rng.uniform(1.5, 2.5))

    def gap_s(self, rate_per_h: float) -> float:
        return self.rng.expovariate(rate_per_h / 3600)

    def truth(self, person: Person, kiosk: str, arrived_s: float) -> dict[str, Any]:
        return {"person": person.pid, "kiosk": kiosk, "arrived_s": arrived_s, "core_c": person.core_c,
                "code_kind": person.code_kind, "code_color": person.code_color}
