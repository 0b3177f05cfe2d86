"""Who arrives at a scenario's lanes: core temperature, fever, vehicle or not, their pass.

One `Population` per kiosk, seeded from (scenario seed, kiosk index), so every lane draws the
same people in every run whatever the other lanes do. Passes are signed by the run's issuers:
green/yellow/red by the trusted health or vehicle issuer, `expired` by the trusted issuer with
a window that ended yesterday, `forged` by a key that is not on the trust list.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim import scene
from sim.passes import Issuer

FEVER_C = 37.3
# What the gateway's verifier answers for each pass kind: (colour, valid).
EXPECTED_VERDICT = {"green": ("green", True), "yellow": ("yellow", True), "red": ("red", True),
                    "expired": ("red", False), "forged": ("red", False)}


@dataclass(frozen=True)
class Person:
    pid: str
    person: scene.Person
    code: str | None
    pass_kind: str | None  # green yellow red expired forged, None = no code shown
    code_kind: str | None  # health / vehicle
    dwell_s: float


class Pki:
    """The run's issuers, trust list and district secret, all derived from the seed."""

    def __init__(self, seed: int, directory: Path) -> None:
        def key(name: str) -> bytes:
            return hashlib.sha256(f"sim-pki/{seed}/{name}".encode()).digest()

        self.health = Issuer("sim-health", seed=key("health"))
        self.vehicle = Issuer("sim-vehicle", seed=key("vehicle"))
        self.forger = Issuer("sim-health", seed=key("forger"))  # claims a trusted key id
        self.secret = key("district-secret")
        directory.mkdir(parents=True, exist_ok=True)
        self.trust_file = directory / "trust.json"
        self.trust_file.write_text(json.dumps({"v": 1, "keys": {
            self.health.key_id: {"public_key": base64.b64encode(self.health.public_bytes()).decode(), "kinds": ["health"]},
            self.vehicle.key_id: {"public_key": base64.b64encode(self.vehicle.public_bytes()).decode(),
                                  "kinds": ["vehicle"]}}}))
        self.secret_file = directory / "district.secret"
        if self.secret_file.exists():
            self.secret_file.unlink()
        fd = os.open(self.secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(base64.b64encode(self.secret).decode() + "\n")


class Population:
    def __init__(self, spec: dict[str, Any], pki: Pki, seed: int, index: int, prefix: str) -> None:
        self.spec = spec
        self.pki = pki
        self.rng = np.random.default_rng([seed, index, 104729])
        self.prefix = prefix
        self.count = 0
        kinds = sorted(spec["passes"])
        self._pass_kinds = kinds
        self._pass_p = np.array([spec["passes"][k] for k in kinds]) / sum(spec["passes"].values())

    def gap_s(self, rate_per_h: float) -> float:
        return float(self.rng.exponential(3600 / rate_per_h))

    def next(self, now_s: float) -> Person:
        s, rng = self.spec, self.rng
        self.count += 1
        if rng.random() < s["fever_share"]:
            core = float(rng.uniform(s["fever_min_c"], s["fever_max_c"]))
        else:
            core = float(rng.normal(s["core_mean_c"], s["core_sd_c"]))
        distance = float(rng.uniform(s["distance_min_m"], s["distance_max_m"]))
        person = scene.random_person(rng, round(core, 2), distance_m=distance)
        dwell = float(rng.uniform(s["dwell_min_s"], s["dwell_max_s"]))
        code = pass_kind = code_kind = None
        if rng.random() >= s["no_code_share"]:
            code_kind = "vehicle" if rng.random() < s["vehicle_share"] else "health"
            pass_kind = str(rng.choice(self._pass_kinds, p=self._pass_p))
            holder = "%018d" % int(rng.integers(10**17, 10**18))
            issuer = self.pki.vehicle if code_kind == "vehicle" else self.pki.health
            colour, issued, expires = pass_kind, int(now_s) - 3600, int(now_s) + 86400
            if pass_kind == "expired":
                colour, issued, expires = "green", int(now_s) - 3 * 86400, int(now_s) - 86400
            elif pass_kind == "forged":
                colour, issuer = "green", self.pki.forger
            code = issuer.issue(holder, code_kind, colour, issued, expires)
        return Person(f"{self.prefix}p{self.count}", person, code, pass_kind, code_kind, dwell)
