"""The signed-pass verifier with real Ed25519 keys and real files: every verdict reason."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from gateway import verifier as vmod
from gateway.verifier import (ConfigError, FallbackVerifier, HolderHasher, SafeVerifier, Verdict, canonical_holder,
                              load_secret, parse_revocations, parse_trust_list)
from kiosk import protocol
from sim.passes import Issuer
from tests.gateway_verdicts.conftest import HOLDER, NOW, Pki, b64, make_pki

DAY = 86400


def issue(issuer: Issuer, color: str = "green", kind: str = "health", holder: str = HOLDER,
          iat: int = NOW - 3600, exp: int = NOW + DAY) -> str:
    return issuer.issue(holder, kind, color, iat, exp)


@pytest.mark.parametrize("color", ["green", "yellow", "red"])
def test_genuine_passes_show_their_colour(pki: Pki, color: str) -> None:
    v = pki.verifier().verify("health", issue(pki.health, color), NOW)
    assert v == Verdict(color, True, "ok", pki.hasher.holder_ref(HOLDER))
    assert len(v.holder_ref or "") == 32 and HOLDER not in (v.holder_ref or "")


def test_vehicle_pass_and_the_kiosks_kind_is_only_a_hint(pki: Pki) -> None:
    raw = issue(pki.vehicle, "yellow", kind="vehicle", holder="粤A·12345")
    assert pki.verifier().verify("unknown", raw, NOW) == Verdict("yellow", True, "ok",
                                                                   pki.hasher.holder_ref("粤A·12345"))


def test_time_window_with_clock_skew(pki: Pki) -> None:
    ver = pki.verifier(skew_s=60)
    raw = issue(pki.health, iat=NOW, exp=NOW + 600)
    assert ver.verify("health", raw, NOW - 59).reason == "ok"  # kiosk/gateway clock a little behind the issuer
    assert ver.verify("health", raw, NOW - 61) == Verdict("red", False, "not_yet_valid", pki.hasher.holder_ref(HOLDER))
    assert ver.verify("health", raw, NOW + 600 + 59).reason == "ok"
    expired = ver.verify("health", raw, NOW + 600 + 60)
    assert expired == Verdict("red", False, "expired", pki.hasher.holder_ref(HOLDER))


def test_forged_tampered_unknown_issuer_and_malformed_are_red_without_holder_ref(pki: Pki) -> None:
    ver = pki.verifier()
    # Signed by a key that is not on the trust list, under a trusted key id.
    assert ver.verify("health", issue(pki.rogue), NOW) == Verdict("red", False, "bad_signature", None)
    # A trusted green pass with its colour changed: the body no longer matches the signature.
    good = issue(pki.health, "red")
    body, _, signature = protocol.decode_pass(good)
    body["c"] = "green"
    tampered = protocol.pass_signing_input(body).decode() + "." + protocol.b64url_encode(signature)
    assert ver.verify("health", tampered, NOW) == Verdict("red", False, "bad_signature", None)
    # The signature itself altered.
    sig = bytearray(signature)
    sig[0] ^= 1
    assert ver.verify("health", good.rsplit(".", 1)[0] + "." + protocol.b64url_encode(bytes(sig)), NOW).reason \
        == "bad_signature"
    assert ver.verify("health", issue(Issuer("someone-else")), NOW) == Verdict("red", False, "unknown_issuer", None)
    for raw in ("SP1.", "SP1.x.y", good + ".extra", good[:-3], "SP1." + protocol.b64url_encode(b"[" * 1500) + "." +
                protocol.b64url_encode(b"\0" * 64)):
        assert ver.verify("health", raw, NOW) == Verdict("red", False, "malformed", None), raw[:30]


def test_issuer_key_window_and_kinds(pki: Pki) -> None:
    ver = pki.verifier()
    # The vehicle key may sign only within its window, and only vehicle passes.
    old = issue(pki.vehicle, kind="vehicle", iat=NOW - DAY * 31, exp=NOW + DAY)
    assert ver.verify("vehicle", old, NOW) == Verdict("red", False, "key_not_valid", None)
    assert ver.verify("health", issue(pki.vehicle, kind="health"), NOW).reason == "key_not_valid"
    assert ver.verify("health", issue(pki.health, kind="vehicle"), NOW).reason == "key_not_valid"


def test_revocation_by_holder_and_by_pass(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmod, "RELOAD_CHECK_S", 0.0)
    ver = pki.verifier()
    old = issue(pki.health, "green", iat=NOW - 7200)
    new = issue(pki.health, "yellow", iat=NOW - 60)
    other = issue(pki.health, "green", holder="HZ-OTHER-1")
    assert ver.verify("health", old, NOW).valid
    ref = pki.hasher.holder_ref(HOLDER)
    pki.write_revocations([{"holder_ref": ref, "issued_before": NOW - 3600, "note": "re-issued yellow"}])
    time.sleep(0.01)
    assert ver.verify("health", old, NOW) == Verdict("red", False, "revoked", ref)
    assert ver.verify("health", new, NOW) == Verdict("yellow", True, "ok", ref)  # the re-issued pass works
    pki.write_revocations([{"holder_ref": ref}])  # every pass of this holder
    assert ver.verify("health", new, NOW).reason == "revoked"
    assert ver.verify("health", other, NOW).reason == "ok"
    _, signing_input, _ = protocol.decode_pass(other)
    pki.write_revocations([{"pass_ref": pki.hasher.pass_ref(signing_input)}])
    assert ver.verify("health", other, NOW).reason == "revoked"
    assert ver.verify("health", new, NOW).reason == "ok"
    # The revocation file holds keyed hashes only.
    assert HOLDER not in pki.revocations_file.read_text() and "HZ-OTHER-1" not in pki.revocations_file.read_text()


def test_a_broken_revocation_file_keeps_the_last_good_one(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vmod, "RELOAD_CHECK_S", 0.0)
    ver = pki.verifier()
    pki.write_revocations([{"holder_ref": pki.hasher.holder_ref(HOLDER)}])
    raw = issue(pki.health)
    assert ver.verify("health", raw, NOW).reason == "revoked"
    pki.revocations_file.write_text('{"v": 1, "revoked": [')  # half-written by hand
    assert ver.verify("health", raw, NOW).reason == "revoked"
    assert ver.load_errors == 1


def test_id_cards_and_other_codes(pki: Pki) -> None:
    ver = pki.verifier()
    ref = pki.hasher.holder_ref(HOLDER)
    # The ID card and a pass issued to that ID number trace to the same holder_ref.
    assert ver.verify("id", HOLDER, NOW) == Verdict("none", False, "id_card", ref)
    assert ver.verify("id", HOLDER.lower(), NOW).holder_ref == ref
    assert ver.verify("health", issue(pki.health), NOW).holder_ref == ref
    assert ver.verify("id", HOLDER[:-1] + "3", NOW) == Verdict("none", False, "bad_id_checksum", None)
    for raw in ("https://example.org/whatever", "", "SP2.abc", "\x00\x01garbage", "１１０１"):
        assert ver.verify("unknown", raw, NOW) == Verdict("none", False, "unknown_code", None)


def test_holder_ref_is_keyed_and_canonical(pki: Pki) -> None:
    h = pki.hasher
    assert h.holder_ref(" 11010519491231002x ") == h.holder_ref(HOLDER)
    assert h.holder_ref("ＨＺ-1") == h.holder_ref("HZ-1")  # full-width input, NFKC
    assert HolderHasher(b"\x01" * 32).holder_ref(HOLDER) != h.holder_ref(HOLDER)
    assert h.holder_ref(HOLDER) != h.pass_ref(HOLDER.encode())  # separate domains
    assert canonical_holder("  ab ") == "AB"
    assert "secret" not in repr(h) or "<secret>" in repr(h)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=300), st.text(max_size=300).map(lambda s: "SP1." + s),
                     st.binary(max_size=200).map(lambda b: "SP1." + protocol.b64url_encode(b) + "." +
                                                 protocol.b64url_encode(b"\0" * 64))),
       kind=st.sampled_from(protocol.CODE_KINDS))
def test_any_raw_text_gives_a_verdict_never_a_green_one(pki_for_fuzz: Pki, raw: str, kind: str) -> None:
    v = pki_for_fuzz.verifier().verify(kind, raw, NOW)
    assert v.color in protocol.CODE_COLORS and not v.valid and v.color != "green"
    protocol.verdict("r-1", v.color, v.valid, v.reason, v.holder_ref)  # always a valid payload


@pytest.fixture(scope="module")
def pki_for_fuzz(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("fuzz") / "pki")


def test_pluggable_fallback_to_offline(pki: Pki) -> None:
    class Platform:
        """A provincial platform's online check, stubbed: knows one holder, is down for another."""

        def __init__(self) -> None:
            self.calls = 0

        def verify(self, kind: str, raw: str, now_s: float) -> Verdict:
            self.calls += 1
            if raw == "PROVINCE:ok":
                return Verdict("green", True, "ok", "f" * 32)
            if raw == "PROVINCE:down":
                raise TimeoutError("platform timeout")
            return Verdict("none", False, FallbackVerifier.UNAVAILABLE, None)

    platform = Platform()
    chain = FallbackVerifier(platform, pki.verifier())
    assert chain.verify("health", "PROVINCE:ok", NOW) == Verdict("green", True, "ok", "f" * 32)
    assert chain.verify("health", "PROVINCE:down", NOW).reason == "unknown_code"
    assert chain.verify("health", issue(pki.health, "yellow"), NOW).reason == "ok"
    assert platform.calls == 3 and chain.fallbacks == 2


def test_safe_verifier_never_passes_a_crash_or_a_bad_verdict() -> None:
    class Broken:
        def verify(self, kind: str, raw: str, now_s: float) -> Verdict:
            if raw == "crash":
                raise UnicodeDecodeError("utf-8", raw.encode(), 0, 1, "bad")
            return Verdict("blue", True, "ok", None)

    safe = SafeVerifier(Broken())
    assert safe.verify("health", "crash", NOW) == Verdict("none", False, "verifier_error", None)
    assert safe.verify("health", "x", NOW) == Verdict("none", False, "verifier_error", None)
    assert safe.errors == 2


def test_trust_list_formats_and_clear_errors(tmp_path: Path) -> None:
    issuer = Issuer("k-1")
    pub = b64(issuer.public_bytes())
    f = tmp_path / "trust.json"
    f.write_text(json.dumps({"keys": {"k-1": pub.rstrip("=").replace("+", "-").replace("/", "_")}}))
    assert set(parse_trust_list(f)) == {"k-1"}
    t = tmp_path / "trust.toml"
    t.write_text(f'v = 1\n[keys.k-1]\npublic_key = "{pub}"\nvalid_from = 1\nvalid_until = 2\n')
    assert parse_trust_list(t)["k-1"].valid_until == 2
    bad = {
        '{"keys": {"k 1": "%s"}}' % pub: "key id",
        '{"keys": {"k-1": "AAAA"}}': "3 bytes",
        '{"keys": {"k-1": "!!"}}': "not base64",
        '{"keys": {"k-1": {"public_key": "%s", "valid_from": 5, "valid_until": 5}}}' % pub: "after valid_from",
        '{"keys": {"k-1": {"public_key": "%s", "kinds": ["id"]}}}' % pub: "kinds",
        '{"keys": {"k-1": {"public_key": "%s", "expires": 1}}}' % pub: "unknown field",
        '{"v": 2, "keys": {}}': "version",
        '{"keys": [': "not valid JSON",
        '[]': "must be an object",
    }
    for text, message in bad.items():
        f.write_text(text)
        with pytest.raises(ConfigError, match=message):
            parse_trust_list(f)
    with pytest.raises(ConfigError, match="No such file"):
        parse_trust_list(tmp_path / "missing.json")


def test_revocation_list_errors(tmp_path: Path) -> None:
    f = tmp_path / "rev.json"
    for entry, message in (({"holder_ref": HOLDER}, "HMAC, never a raw id"),
                           ({"holder_ref": "a" * 32, "pass_ref": "b" * 32}, "exactly one"),
                           ({"pass_ref": "b" * 32, "issued_before": 3}, "holder_ref entries only"),
                           ({"holder_ref": "a" * 32, "issued_before": "yesterday"}, "Unix seconds")):
        f.write_text(json.dumps({"revoked": [entry]}))
        with pytest.raises(ConfigError, match=message):
            parse_revocations(f)


def test_secret_from_file_or_env_with_clear_errors(tmp_path: Path) -> None:
    f = tmp_path / "s"
    f.touch(mode=0o600)
    f.write_text(b64(b"k" * 32))
    assert load_secret(f, env={}) == b"k" * 32
    assert load_secret(env={"CHECKPOINT_DISTRICT_SECRET_FILE": str(f)}) == b"k" * 32
    assert load_secret(env={"CHECKPOINT_DISTRICT_SECRET": b64(b"e" * 40)}) == b"e" * 40
    os.chmod(f, 0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        load_secret(f, env={})
    os.chmod(f, 0o600)
    f.write_text(b64(b"short"))
    with pytest.raises(ConfigError, match="at least 32"):
        load_secret(f, env={})
    with pytest.raises(ConfigError, match="no district secret"):
        load_secret(env={})
    with pytest.raises(ConfigError, match="not base64"):
        load_secret(env={"CHECKPOINT_DISTRICT_SECRET": "not base64 at all!"})


def test_every_verdict_reason_is_documented_in_the_contract() -> None:
    import re

    from sim.services import ROOT

    doc = (ROOT / "firmware" / "PROTOCOL.md").read_text().split("### Verdicts", 1)[1].split("\n## ", 1)[0]
    documented = {r for line in doc.splitlines() if line.startswith("| `")
                  for r in re.findall(r"`(\w+)`", line.split("|")[1])} - {"reason"}
    assert documented == {"ok", "expired", "not_yet_valid", "revoked", "key_not_valid", "unknown_issuer",
                          "bad_signature", "malformed", "id_card", "bad_id_checksum", "unknown_code",
                          "malformed_request", "verifier_error"}
    assert all(f"`{r}`" in (vmod.__doc__ or "") for r in documented - {"malformed_request", "verifier_error"})
