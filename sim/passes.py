"""A pass issuer for the simulator and tests: signed health codes and vehicle passes (Ed25519)."""
from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kiosk import protocol


class Issuer:
    def __init__(self, key_id: str, seed: bytes | None = None) -> None:
        self.key_id = key_id
        self._key = Ed25519PrivateKey.from_private_bytes(seed) if seed else Ed25519PrivateKey.generate()

    def public_bytes(self) -> bytes:
        return self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def issue(self, holder: str, kind: str, color: str, issued_s: int, expires_s: int) -> str:
        body = protocol.pass_body(holder, kind, color, issued_s, expires_s, self.key_id)
        signature = self._key.sign(protocol.pass_signing_input(body))
        return protocol.encode_pass(body, signature)
