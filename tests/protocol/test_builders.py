"""Builders reproduce the fixtures, round-trip through encode/parse_message, and refuse bad input."""
import json

import pytest

from kiosk import protocol
from tests.protocol.conftest import TABLE, fixture

COMMON = ("v", "epoch", "seq", "boot", "ts", "uptime_ms", "lane", "dir", "type", "config_hash")


def build(name):
    """Rebuild fixture `name` through its builder."""
    f = fixture(name)
    channel = name.split(".")[0]
    if name == "status.online":
        return protocol.status_online(f["fw"], f["board"], f["boot"], f["epoch"], f["config_hash"], f["ts"])
    if name == "status.offline":
        return protocol.status_offline(f["epoch"], f["boot"])
    if channel == "event":
        fields = {k: v for k, v in f.items() if k not in COMMON}
        return protocol.event(f["epoch"], f["seq"], f["boot"], f["ts"], f["uptime_ms"], f["lane"], f["dir"],
                              f["type"], f["config_hash"], fields)
    if channel == "telemetry":
        values = {k: v for k, v in f.items() if k not in ("v", "uptime_ms", "ts")}
        return protocol.telemetry(f["uptime_ms"], f["ts"], **values)
    if channel == "config":
        return protocol.config_message(f["settings"])
    if channel == "cmd":
        return protocol.command(f["id"], f["name"], f["args"], f["expires"])
    if channel == "ack":
        return protocol.ack(f["id"], f["ok"], f["detail"])
    if channel == "verify":
        return protocol.verify(f["id"], f["kind"], f["raw"])
    if channel == "verdict":
        return protocol.verdict(f["id"], f["color"], f["valid"], f["reason"], f["holder_ref"])
    raise LookupError(name)  # alert/report/summary: the gateway builds them (no builder here)


BUILT = [n for n in TABLE["valid"] if n.split(".")[0] not in protocol.GATEWAY_CHANNELS]


@pytest.mark.parametrize("name", BUILT)
def test_builder_reproduces_fixture_and_round_trips(name):
    body = build(name)
    assert body == fixture(name)
    channel = name.split(".")[0]
    data = protocol.encode(body)
    assert isinstance(data, bytes)
    assert data == json.dumps(body, separators=(",", ":")).encode()  # compact
    assert json.loads(data) == body
    checkpoint, kiosk, ch, parsed = protocol.parse_message(protocol.topic("cp-01", "kiosk-01", channel), data)
    assert (checkpoint, kiosk, ch, parsed) == ("cp-01", "kiosk-01", channel, body)


@pytest.mark.parametrize("name", ["alert", "report", "summary"])
def test_gateway_payloads_round_trip(name):
    body = fixture(name)
    parsed = protocol.parse_message(protocol.gateway_topic("cp-01", name), protocol.encode(body))
    assert parsed == ("cp-01", "_gateway", name, body)


def test_code_info_and_event_with_code():
    code = protocol.code_info("health", "green", "5f1c0e9a7b3d42c8a1e6f0b9d2c47e31")
    assert code == fixture("event.screening")["code"]
    assert protocol.code_info("unknown", "none", None)["holder_ref"] is None
    for args, reason in [(("qr", "green", None), "bad_value"), (("id", "blue", None), "bad_value"),
                         (("id", "none", 5), "bad_type")]:
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.code_info(*args)
        assert caught.value.reason == reason


def test_telemetry_minimal():
    assert protocol.telemetry(0, None) == {"v": 1, "uptime_ms": 0, "ts": None}


def test_event_refuses_to_overwrite_common_fields():
    for key in COMMON:
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.event("e1", 1, 1, None, 0, "L1", "in", "fault", "h", {key: 1, "part": "air", "detail": ""})
        assert caught.value.reason == "bad_value"


@pytest.mark.parametrize("call, reason", [
    (lambda: protocol.status_online("1.0", "b", 1, "_e", "h", None), "reserved_id"),
    (lambda: protocol.status_online("1.0", "b", -1, "e", "h", None), "bad_type"),
    (lambda: protocol.status_offline("e 1", 1), "bad_id"),
    (lambda: protocol.event("e1", 1.0, 1, None, 0, "L1", "in", "boot", "h", {"fw": "1", "board": "b"}), "bad_type"),
    (lambda: protocol.event("e1", 1, 1, None, 0, "L1", "sideways", "boot", "h", {"fw": "1", "board": "b"}),
     "bad_value"),
    (lambda: protocol.event("e1", 1, 1, None, 0, "L1", "in", "boot", "h", {"fw": "1"}), "missing_field"),
    (lambda: protocol.event("e1", 1, 1, None, 0, "L1", "in", "screening", "h",
                            {"result": "fever", "temp_c": 38.0, "skin_c": None, "ambient_c": None,
                             "distance_cm": None, "code": None, "roi": {"w": 2, "h": 2, "t": [1, 2, 3]}}),
     "bad_value"),
    (lambda: protocol.telemetry(-1, None), "bad_type"),
    (lambda: protocol.telemetry(1, None, rssi="weak"), "bad_type"),
    (lambda: protocol.command("c1", "format", {}, 1), "bad_value"),
    (lambda: protocol.command("c1", "reboot", None, 1), "bad_type"),
    (lambda: protocol.ack("c1", "yes", ""), "bad_type"),
    (lambda: protocol.verify("r1", "health", "x" * 2049), "too_large"),
    (lambda: protocol.verdict("r1", "green", True, "ok", 7), "bad_type"),
    (lambda: protocol.config_message([]), "bad_type"),
])
def test_builders_validate(call, reason):
    with pytest.raises(protocol.ProtocolError) as caught:
        call()
    assert caught.value.reason == reason


def test_encode_size_limit():
    base = fixture("event.scan")
    base["x_pad"] = ""
    room = protocol.MAX_PAYLOAD - len(protocol.encode(base))
    base["x_pad"] = "x" * room
    assert len(protocol.encode(base)) == protocol.MAX_PAYLOAD
    base["x_pad"] += "x"
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.encode(base)
    assert caught.value.reason == "too_large"


def test_encode_counts_bytes_not_characters():
    # 6000 CJK characters: 6000 str characters but (escaped by CPython's json) far over 16 KiB
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.encode({"note": "\u4f53" * 6000})
    assert caught.value.reason == "too_large"


# ---- dedup key -------------------------------------------------------------------------------

def test_dedup_key_is_checkpoint_kiosk_epoch_seq():
    ev = fixture("event.screening")
    assert protocol.dedup_key("cp-01", "kiosk-01", ev) == ("cp-01", "kiosk-01", "e7Hq2mK9", 4812)


def test_dedup_key_survives_a_resend():
    """A republished event (same record, ts filled in after a clock sync, new unknown field) is one event."""
    ev = fixture("event.boot")
    assert ev["ts"] is None
    resent = dict(ev, ts=1767254401000, x_retry=2)
    topic = protocol.topic("cp-01", "kiosk-01", "event")
    first = protocol.parse_message(topic, protocol.encode(ev))
    second = protocol.parse_message(topic, protocol.encode(resent))
    k1 = protocol.dedup_key(first[0], first[1], first[3])
    k2 = protocol.dedup_key(second[0], second[1], second[3])
    assert k1 == k2
    assert len({k1, k2}) == 1  # hashable: usable as a set/dict key


def test_dedup_key_changes_with_each_part():
    ev = fixture("event.scan")
    base = protocol.dedup_key("cp-01", "kiosk-01", ev)
    others = {
        protocol.dedup_key("cp-02", "kiosk-01", ev),
        protocol.dedup_key("cp-01", "kiosk-02", ev),
        protocol.dedup_key("cp-01", "kiosk-01", dict(ev, epoch="newEpoch")),
        protocol.dedup_key("cp-01", "kiosk-01", dict(ev, seq=ev["seq"] + 1)),
    }
    assert base not in others and len(others) == 4
    # a kiosk reflashed (new epoch) may restart seq at 0 without colliding with its old records
    assert protocol.dedup_key("cp", "k", dict(ev, epoch="a", seq=0)) != protocol.dedup_key("cp", "k", dict(ev, epoch="b", seq=0))
