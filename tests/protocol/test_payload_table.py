"""Every verdict of parse_message over the fixture table, on CPython and on MicroPython.

The table (payloads/cases.json) names each case and the ProtocolError reason it must get; cases.py
expands it (plus a missing-field and an optional-field sweep over every valid fixture).
"""
import json
import os

import pytest

from kiosk import protocol
from tests.protocol import cases
from tests.protocol.conftest import CASES, PAYLOADS, TABLE, fixture

IDS = [c[0] for c in CASES]


def test_case_names_are_unique():
    assert len(IDS) == len(set(IDS))


@pytest.mark.parametrize("name, topic, payload, reason, detail, _mp", CASES, ids=IDS)
def test_cpython_verdict(name, topic, payload, reason, detail, _mp):
    if reason is None:
        checkpoint, kiosk, channel, body = protocol.parse_message(topic, payload)
        assert topic == "/".join(("screening/v1", checkpoint, kiosk, channel))
        assert body == json.loads(payload)  # nothing dropped, nothing added: unknown fields kept
        return
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.parse_message(topic, payload)
    assert caught.value.reason == reason, caught.value
    if detail is not None:
        assert caught.value.detail == detail
    assert str(caught.value).startswith(reason)


def test_micropython_gives_the_same_verdicts(micropython_verdicts, cpython_verdicts):
    assert set(micropython_verdicts) == set(cpython_verdicts)
    differ = []
    for name, _topic, _payload, reason, _detail, mp_reason in CASES:
        mp = micropython_verdicts[name]
        cp = cpython_verdicts[name]
        if mp_reason == cases.SAME:
            # same reason, same detail, and for accepted payloads the same canonical body
            if mp != cp:
                differ.append((name, cp, mp))
        elif mp[0] != mp_reason:
            differ.append((name, "expected MicroPython reason %r" % mp_reason, mp))
    assert not differ, "\n".join(map(repr, differ))


def test_known_differences_are_few_and_cpython_is_strict():
    """The rows where MicroPython is knowingly lenient are all inputs CPython rejects."""
    known = [row for row in TABLE["invalid"] if "micropython" in row]
    assert {row["name"] for row in known} == {
        "bytes.surrogate_utf8", "bytes.deep_nesting_balanced", "bytes.trailing_comma",
        "bytes.missing_comma", "bytes.control_char", "bytes.trailing_nul", "bytes.huge_int",
    }
    assert all(row["reason"] in ("not_json", "not_utf8") for row in known)


def test_every_payload_file_is_used():
    listed = set(TABLE["valid"])
    on_disk = {f[: -len(".json")] for f in os.listdir(PAYLOADS / "valid")}
    assert on_disk == listed
    used = {row["file"] for row in TABLE["invalid"] if "file" in row}
    assert used == set(os.listdir(PAYLOADS / "invalid"))


def test_a_valid_example_for_every_channel_and_event_type():
    channels = {cases.channel_of(n) for n in TABLE["valid"]}
    assert channels == set(protocol.KIOSK_CHANNELS) | set(protocol.GATEWAY_CHANNELS)
    types = {fixture(n)["type"] for n in TABLE["valid"] if n.startswith("event.")}
    assert types == set(protocol.EVENT_TYPES)
    states = {fixture(n)["state"] for n in TABLE["valid"] if n.startswith("status.")}
    assert states == {"online", "offline"}


def test_every_reason_is_exercised():
    reasons = {c[3] for c in CASES}
    assert reasons >= {"bad_id", "reserved_id", "bad_topic", "bad_version", "unknown_channel", "too_large",
                       "bad_type", "missing_field", "bad_value", "not_utf8", "not_json", "not_object", "empty"}


def test_required_lists_cover_the_common_event_fields():
    # DESIGN section 4: {"v","epoch","seq","boot","ts","uptime_ms","lane","type","config_hash",...}
    common = ["v", "epoch", "seq", "boot", "ts", "uptime_ms", "lane", "type", "config_hash"]
    for name in TABLE["valid"]:
        if name.startswith("event."):
            assert set(common) <= set(TABLE["required"][name]), name


def test_fixture_events_carry_the_config_fixture_hash():
    want = protocol.config_hash(fixture("config")["settings"])
    for name in TABLE["valid"]:
        body = fixture(name)
        if "config_hash" in body:
            assert body["config_hash"] == want, name


def test_unknown_fields_are_kept_in_the_returned_body():
    body = dict(fixture("event.fault"), x_vendor={"model": "k2"}, code=5, roi="n/a")
    *_, got = protocol.parse_message("screening/v1/cp-01/kiosk-01/event", protocol.encode(body))
    assert got["x_vendor"] == {"model": "k2"} and got["code"] == 5 and got["roi"] == "n/a"


# ---- the same rejections through decode() and validate() directly ---------------------------

def test_decode_checks_bytes_only():
    assert protocol.decode(b'{"anything": [1, 2]}') == {"anything": [1, 2]}
    assert protocol.decode(bytearray(b"{}")) == {}
    assert protocol.decode(memoryview(b'{"a":1}')) == {"a": 1}
    for payload, reason in [(b"\xff{}", "not_utf8"), (b"{", "not_json"), (b"[]", "not_object"),
                            (b'{"a":NaN}', "not_json"), (b" " * 16385, "too_large"), (b"", "not_json")]:
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.decode(payload)
        assert caught.value.reason == reason


def test_oversize_is_checked_before_decoding():
    # 16385 bytes of garbage that is not UTF-8: the size wins, nothing is decoded
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode(b"\xff" * (protocol.MAX_PAYLOAD + 1))
    assert caught.value.reason == "too_large"


@pytest.mark.parametrize("value", [[], "x", 5, None, True])
def test_validate_wants_an_object(value):
    for channel in list(protocol.KIOSK_CHANNELS) + list(protocol.GATEWAY_CHANNELS):
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.validate(channel, value)
        assert caught.value.reason == "not_object"


def test_validate_unknown_channel():
    for channel in ["events", "", None, "_gateway", 3]:
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.validate(channel, {"v": 1})
        assert caught.value.reason == "unknown_channel"


def test_validate_returns_the_same_object():
    body = fixture("event.scan")
    assert protocol.validate("event", body) is body
    assert protocol.validate_event(body) is body


def test_floats_and_nan_objects_from_python_callers():
    """Builders get Python floats, not JSON: NaN/inf must still be refused where a number is due."""
    for bad in (float("nan"), float("inf"), float("-inf")):
        body = dict(fixture("event.screening"), temp_c=bad)
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.validate("event", body)
        assert caught.value.reason == "bad_type"
        roi = dict(fixture("event.screening.fever"))
        roi["roi"] = {"w": 1, "h": 1, "t": [bad]}
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.validate("event", roi)
        assert caught.value.reason == "bad_value"
