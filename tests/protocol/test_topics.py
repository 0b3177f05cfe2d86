"""Topic helpers, ids, and the channel table of DESIGN.md section 4."""
import pytest

from kiosk import protocol


def reason_of(fn, *args):
    with pytest.raises(protocol.ProtocolError) as caught:
        fn(*args)
    return caught.value.reason


# channel -> (direction, QoS, retained, message expiry s), written from DESIGN.md section 4, not from the code
DESIGN_TABLE = {
    "status": ("from_kiosk", 1, True, None),
    "event": ("from_kiosk", 1, False, None),
    "telemetry": ("from_kiosk", 0, False, None),
    "config": ("to_kiosk", 1, True, None),
    "cmd": ("to_kiosk", 1, False, None),
    "ack": ("from_kiosk", 1, False, None),
    "verify": ("from_kiosk", 1, False, 5),
    "verdict": ("to_kiosk", 1, False, 5),
    "alert": ("gateway", 1, False, None),
    "report": ("gateway", 1, False, None),
    "summary": ("gateway", 1, True, None),
}


@pytest.mark.parametrize("channel", sorted(DESIGN_TABLE))
def test_channel_table_matches_design(channel):
    direction, qos, retained, expiry = DESIGN_TABLE[channel]
    assert protocol.qos(channel) == qos
    assert protocol.retained(channel) is retained
    assert protocol.expiry_s(channel) == expiry
    assert (channel in protocol.FROM_KIOSK) == (direction == "from_kiosk")
    assert (channel in protocol.TO_KIOSK) == (direction == "to_kiosk")
    assert (channel in protocol.GATEWAY_CHANNELS) == (direction == "gateway")


def test_every_channel_is_in_the_table():
    assert set(protocol.KIOSK_CHANNELS) | set(protocol.GATEWAY_CHANNELS) == set(DESIGN_TABLE)
    assert not set(protocol.KIOSK_CHANNELS) & set(protocol.GATEWAY_CHANNELS)


def test_verify_and_verdict_are_never_stored_and_expire_in_5_s():
    assert set(protocol.NEVER_STORED) == {"verify", "verdict"}
    assert protocol.VERIFY_EXPIRY_S == 5
    assert protocol.expiry_s("verify") == protocol.expiry_s("verdict") == 5


def test_telemetry_is_qos_0_and_only_status_config_summary_are_retained():
    assert protocol.qos("telemetry") == 0
    assert {c for c in DESIGN_TABLE if protocol.retained(c)} == {"status", "config", "summary"}


def test_constants():
    assert protocol.VERSION == 1
    assert protocol.ROOT == "screening/v1"
    assert protocol.MAX_PAYLOAD == 16 * 1024
    assert protocol.GATEWAY_ID == "_gateway"
    assert protocol.ALL_VERSIONS == "screening/#"  # the gateway sees other versions, to count them


def test_all_versions_filter_covers_other_versions():
    # what a broker would deliver for "screening/#": v2 topics arrive and are refused by version
    assert protocol.ALL_VERSIONS.endswith("/#")
    prefix = protocol.ALL_VERSIONS[:-1]
    for name in ("screening/v1/cp/k/event", "screening/v2/cp/k/event"):
        assert name.startswith(prefix)
    assert reason_of(protocol.parse_topic, "screening/v2/cp/k/event") == "bad_version"


# ---- topics ----------------------------------------------------------------------------------

def test_topic_and_gateway_topic():
    assert protocol.topic("cp-01", "kiosk-01", "event") == "screening/v1/cp-01/kiosk-01/event"
    assert protocol.gateway_topic("cp-01", "summary") == "screening/v1/cp-01/_gateway/summary"
    for channel in protocol.KIOSK_CHANNELS:
        name = protocol.topic("A_z-9", "k", channel)
        assert protocol.parse_topic(name) == ("A_z-9", "k", channel)
    for channel in protocol.GATEWAY_CHANNELS:
        name = protocol.gateway_topic("cp", channel)
        assert protocol.parse_topic(name) == ("cp", "_gateway", channel)


@pytest.mark.parametrize("args, reason", [
    (("cp 1", "k", "event"), "bad_id"),
    (("cp", "", "event"), "bad_id"),
    (("cp", "k" * 33, "event"), "bad_id"),
    (("cp", None, "event"), "bad_id"),
    (("cp", 7, "event"), "bad_id"),
    (("cp", "_gateway", "event"), "reserved_id"),
    (("_cp", "k", "event"), "reserved_id"),
    (("cp", "k", "alert"), "unknown_channel"),
    (("cp", "k", "events"), "unknown_channel"),
    (("cp", "k", 5), "unknown_channel"),
    (("cp", "k", None), "unknown_channel"),
])
def test_topic_rejects(args, reason):
    assert reason_of(protocol.topic, *args) == reason


@pytest.mark.parametrize("args, reason", [
    (("cp", "event"), "unknown_channel"),
    (("cp", 5), "unknown_channel"),
    (("_gateway", "alert"), "reserved_id"),
    (("c/p", "alert"), "bad_id"),
])
def test_gateway_topic_rejects(args, reason):
    assert reason_of(protocol.gateway_topic, *args) == reason


def test_subscription_filters():
    assert protocol.subscription() == "screening/v1/+/+/+"
    assert protocol.subscription(channel="event") == "screening/v1/+/+/event"
    assert protocol.subscription("cp-01") == "screening/v1/cp-01/+/+"
    assert protocol.subscription("cp-01", "_gateway", "summary") == "screening/v1/cp-01/_gateway/summary"
    assert protocol.subscription("cp-01", "kiosk-01", "#") == "screening/v1/cp-01/kiosk-01/#"


@pytest.mark.parametrize("name, reason", [
    ("screening/v1/cp/k", "bad_topic"),
    ("screening/v1/cp/k/event/x", "bad_topic"),
    ("screening/v1", "bad_topic"),
    ("screening", "bad_topic"),
    ("", "bad_topic"),
    ("/", "bad_topic"),
    ("other/v1/cp/k/event", "bad_topic"),
    ("screening/v2/cp/k/event", "bad_version"),
    ("screening/v1.1/cp/k/event", "bad_version"),
    ("screening/V1/cp/k/event", "bad_version"),
    ("screening/v1/+/k/event", "bad_id"),
    ("screening/v1/cp/#/event", "bad_id"),
    ("screening/v1/cp/_k/event", "reserved_id"),
    ("screening/v1/cp/_gateway/event", "unknown_channel"),
    ("screening/v1/cp/_gateway/verdict", "unknown_channel"),
    ("screening/v1/cp/k/summary", "unknown_channel"),
    ("screening/v1/cp/k/", "unknown_channel"),
])
def test_parse_topic_rejects(name, reason):
    assert reason_of(protocol.parse_topic, name) == reason


def test_bad_topic_detail_is_bounded():
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.parse_topic("x/" * 1000)
    assert len(caught.value.detail) <= 80


# ---- ids -------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["a", "Z", "0", "a-b_c", "-lead-dash", "k" * 32, "ABCxyz019_-"])
def test_check_id_accepts(value):
    assert protocol.check_id(value) == value


@pytest.mark.parametrize("value, reason", [
    ("", "bad_id"), ("k" * 33, "bad_id"), (None, "bad_id"), (12, "bad_id"), (b"kiosk", "bad_id"),
    (["k"], "bad_id"), ("a b", "bad_id"), ("a/b", "bad_id"), ("a.b", "bad_id"), ("a+", "bad_id"),
    ("\u00e9", "bad_id"), ("k\n", "bad_id"), ("\uff41", "bad_id"),
    ("_", "reserved_id"), ("_x", "reserved_id"), ("_gateway", "reserved_id"), ("_" + "k" * 31, "reserved_id"),
])
def test_check_id_rejects(value, reason):
    assert reason_of(protocol.check_id, value) == reason


def test_check_id_names_the_field():
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.check_id("a b", "lane")
    assert caught.value.detail.startswith("lane")


def test_protocol_error_is_a_value_error_with_reason_and_detail():
    err = protocol.ProtocolError("bad_id", "kiosk must be 1-32 characters")
    assert isinstance(err, ValueError)
    assert (err.reason, err.detail) == ("bad_id", "kiosk must be 1-32 characters")
    assert str(err) == "bad_id: kiosk must be 1-32 characters"
    assert str(protocol.ProtocolError("empty")) == "empty"
