"""People arriving at a lane: who they are, their true core temperature, their code.

Foundation crowd: Poisson arrivals, a normal core-temperature distribution with a fever share,
signed passes of several colours, each person drawn with individual facial physiology by
`sim.scene`. The simulator issue brings scenarios, weather over the day and accelerated time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sim import scene
from sim.passes import Issuer

FEVER_C = 37.3


@dataclass
class Arrival:
    pid: str
    person: scene.Person
    code: str | None
    code_kind: str | None
    code_color: str | None
    dwell_s: float


class LaneView:
    """What one kiosk's sensor sees: the lane's scene with whoever stands in it now."""

    def __init__(self, air_c: float, seed: int, fov_deg: float = 55.0, refresh_hz: float = 8.0) -> None:
        self.scene = scene.Scene(air_c=air_c, fov_deg=fov_deg, refresh_hz=refresh_hz, seed=seed)
        self.frame_index = 0

    @property
    def air_c(self) -> float:
        return self.scene.air_c

    def enter(self, person: scene.Person) -> None:
        self.scene.people = [person]

    def leave(self) -> None:
        self.scene.people = []

    def render(self) -> list[float]:
        self.frame_index += 1
        temps, _truth = scene.render(self.scene, self.frame_index)
        return temps


class Crowd:
    def __init__(self, seed: int, issuer: Issuer, fever_share: float = 0.05, code_share: float = 0.9) -> None:
        self.rng = np.random.default_rng([seed, 104729])
        self.issuer = issuer
        self.fever_share = fever_share
        self.code_share = code_share
        self.count = 0

    def next_arrival(self, now_s: int) -> Arrival:
        self.count += 1
        rng = self.rng
        if rng.random() < self.fever_share:
            core = float(rng.uniform(37.8, 39.5))
        else:
            core = float(rng.normal(36.8, 0.25))  # oral, monitor mode: the calibration data's reference
        person = scene.random_person(rng, round(core, 2), distance_m=float(rng.uniform(0.45, 0.8)))
        code = kind = color = None
        if rng.random() < self.code_share:
            kind = "vehicle" if rng.random() < 0.1 else "health"
            color = str(rng.choice(["green", "yellow", "red"], p=[0.9, 0.07, 0.03]))
            holder = "%018d" % int(rng.integers(10**17, 10**18))
            code = self.issuer.issue(holder, kind, color, now_s - 3600, now_s + 86400)
        return Arrival(f"p{self.count}", person, code, kind, color, dwell_s=float(rng.uniform(2.0, 3.0)))

    def gap_s(self, rate_per_h: float) -> float:
        return float(self.rng.exponential(3600 / rate_per_h))

    @staticmethod
    def truth(arrival: Arrival, kiosk: str, arrived_s: float, air_c: float) -> dict[str, Any]:
        return {"person": arrival.pid, "kiosk": kiosk, "arrived_s": arrived_s, "core_c": arrival.person.core_c,
                "fever": arrival.person.core_c >= FEVER_C, "air_c": air_c,
                "distance_m": round(arrival.person.distance_m, 2), "code_kind": arrival.code_kind,
                "code_color": arrival.code_color}
