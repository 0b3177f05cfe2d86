"""Real Ed25519 keys, a district secret and trust/revocation files, made fresh for each test."""
from __future__ import annotations

import base64
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.verifier import HolderHasher, SignedPassVerifier
from sim.passes import Issuer

NOW = 1767254400  # 2026-01-01 08:00 UTC
HOLDER = "11010519491231002X"  # the textbook sample resident ID number (good check digit)
REVOKED = "HZ-REVOKED-9"  # on the revocation list a fresh Pki starts with
DISTINCTIVE = "QZXJ-ZEBRA-7741-MARKER"  # a holder id that cannot occur by chance in any file


@dataclass
class Pki:
    dir: Path
    secret: bytes
    secret_file: Path
    trust_file: Path
    revocations_file: Path
    health: Issuer
    vehicle: Issuer
    rogue: Issuer  # not on the trust list

    @property
    def hasher(self) -> HolderHasher:
        return HolderHasher(self.secret)

    def verifier(self, **kw: Any) -> SignedPassVerifier:
        return SignedPassVerifier(self.trust_file, self.hasher, self.revocations_file, **kw)

    def write_revocations(self, entries: list[dict[str, Any]]) -> None:
        tmp = self.revocations_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"v": 1, "revoked": entries}))
        os.replace(tmp, self.revocations_file)

    def env(self) -> dict[str, str]:
        return {"CHECKPOINT_TRUST_LIST": str(self.trust_file), "CHECKPOINT_REVOCATIONS": str(self.revocations_file),
                "CHECKPOINT_DISTRICT_SECRET_FILE": str(self.secret_file)}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def make_pki(d: Path) -> Pki:
    d.mkdir()
    secret = secrets.token_bytes(32)
    secret_file = d / "district.secret"
    secret_file.touch(mode=0o600)
    secret_file.write_text(b64(secret) + "\n")
    health, vehicle, rogue = Issuer("gz-health-2026"), Issuer("gz-vehicle-2026"), Issuer("gz-health-2026")
    trust = d / "trust.json"
    trust.write_text(json.dumps({"v": 1, "keys": {
        health.key_id: {"public_key": b64(health.public_bytes()), "kinds": ["health"]},
        vehicle.key_id: {"public_key": b64(vehicle.public_bytes()), "valid_from": NOW - 86400 * 30,
                         "valid_until": NOW + 86400 * 30, "kinds": ["vehicle"]},
    }}))
    revocations = d / "revocations.json"
    p = Pki(d, secret, secret_file, trust, revocations, health, vehicle, rogue)
    p.write_revocations([{"holder_ref": p.hasher.holder_ref(REVOKED), "note": "test"}])
    return p
