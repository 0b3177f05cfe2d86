"""canonical() and config_hash(): one text, one hash, on the kiosk (MicroPython) and the gateway (CPython)."""
import binascii
import hashlib
import json

import pytest
from hypothesis import given, settings, strategies as st

from kiosk import protocol
from tests.protocol.conftest import fixture, micropython_json

SETTINGS = [
    {},
    {"fever_c": 37.3, "recheck_band_c": 0.3, "pair_window_ms": 4000},
    {"pair_window_ms": 4000, "fever_c": 37.3, "recheck_band_c": 0.3},  # same, other order
    {"fever_c": 37.4, "recheck_band_c": 0.3, "pair_window_ms": 4000},
    fixture("config")["settings"],
    {"floats": [0.1, 1e-7, 123456789.0, -0.0, 36.6, 1 / 3, 1e16, 100.0, 2.5e-3, -40.25, 1e300]},
    {"ints": [0, -5, 7, 2 ** 31, 2 ** 64, -(2 ** 70)], "bools": [True, False], "none": None},
    {"nested": {"a": {"b": {"c": [1, [2, [3, {"d": "e"}]]]}}}, "empty": {"l": [], "d": {}}},
    {"\u00e9t\u00e9": "na\u00efve", "zh": "\u8bf7\u51fa\u793a\u5065\u5eb7\u7801", "emoji": "\U0001f600 ok",
     "ctl": "\b\f\n\r\t\x01\x1f\x7f", "quotes": "\"\\/", "": "empty key"},
    {"Z": 1, "a": 2, "_": 3, "A": 4, "\u00e9": 5, "\U0001f600": 6, "z": 7},  # code-point key order
]


def test_known_text():
    assert protocol.canonical({"b": 1, "a": "\u00e9", "c": [True, None, 37.3]}) == \
        '{"a":"\\u00e9","b":1,"c":[true,null,37.3]}'
    assert protocol.canonical({"e": "\U0001f600"}) == '{"e":"\\ud83d\\ude00"}'
    assert protocol.canonical({"c": "\b\f\x7f\x00"}) == '{"c":"\\b\\f\\u007f\\u0000"}'
    assert protocol.canonical({}) == "{}"


def test_config_hash_is_8_hex_of_sha256_of_canonical():
    s = fixture("config")["settings"]
    want = binascii.hexlify(hashlib.sha256(protocol.canonical(s).encode()).digest()[:4]).decode()
    assert protocol.config_hash(s) == want == "b12a153e"  # the fixtures' events carry this hash


def test_order_does_not_matter_values_do():
    assert protocol.config_hash(SETTINGS[1]) == protocol.config_hash(SETTINGS[2])
    assert protocol.config_hash(SETTINGS[1]) != protocol.config_hash(SETTINGS[3])


def test_floats_keep_6_significant_digits():
    # what an ESP32's 32-bit float and the gateway's double agree on
    assert protocol.canonical({"t": 37.3}) == protocol.canonical({"t": 37.30000001}) == '{"t":37.3}'
    assert protocol.canonical({"t": 1 / 3}) == '{"t":0.333333}'
    assert protocol.canonical({"t": 1e16}) == '{"t":1e+16}'
    assert protocol.canonical({"t": 37.0}) == protocol.canonical({"t": 37}) == '{"t":37}'


def test_canonical_is_json():
    for s in SETTINGS:
        back = json.loads(protocol.canonical(s))
        assert set(back) == set(s)


def test_depth_limit_is_a_protocol_error():
    deep = inner = {}
    for _ in range(protocol.MAX_DEPTH - 1):
        inner["a"] = {}
        inner = inner["a"]
    protocol.config_hash(deep)  # MAX_DEPTH objects deep: fine
    inner["a"] = [1]
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.config_hash(deep)
    assert caught.value.reason == "bad_value"
    hostile = []
    for _ in range(5000):  # what MicroPython's json happily parses out of 10 KB of brackets
        hostile = [hostile]
    hostile = {"a": hostile}
    with pytest.raises(protocol.ProtocolError):
        protocol.config_hash(hostile)


@pytest.mark.parametrize("value, reason", [({1: "x"}, "bad_type"), ({"a": object()}, "bad_type"),
                                           ({"a": b"bytes"}, "bad_type"), ({"a": {2.5: 1}}, "bad_type")])
def test_canonical_rejects_non_json(value, reason):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.canonical(value)
    assert caught.value.reason == reason


def test_same_text_and_hash_under_micropython():
    """Each settings dict reaches MicroPython two ways: as the gateway's encoded config message (CPython
    json, non-ASCII as \\u escapes) and as raw UTF-8 JSON; both must give CPython's text and hash."""
    wire = [binascii.hexlify(protocol.encode(protocol.config_message(s))).decode() for s in SETTINGS]
    raw = [json.dumps(s, ensure_ascii=False) for s in SETTINGS]
    script = (
        "import json, binascii\n"
        "from kiosk import protocol\n"
        "for w, r in zip(%r, %r):\n"
        "    body = protocol.parse_message('screening/v1/cp/k/config', binascii.unhexlify(w))[3]\n"
        "    s = json.loads(r)\n"
        "    print(json.dumps([protocol.canonical(body['settings']), protocol.config_hash(body['settings']),\n"
        "                      protocol.canonical(s), protocol.config_hash(s),\n"
        "                      binascii.hexlify(protocol.encode(protocol.config_message(s))).decode()]))\n"
        % (wire, raw)
    )
    rows = micropython_json(script)
    assert len(rows) == len(SETTINGS)
    for s, (c1, h1, c2, h2, mp_wire) in zip(SETTINGS, rows):
        assert c1 == c2 == protocol.canonical(s)
        assert h1 == h2 == protocol.config_hash(s)
        # and back: the kiosk's own encoding (raw UTF-8) gives the gateway the same hash
        body = protocol.parse_message("screening/v1/cp/k/config", binascii.unhexlify(mp_wire))[3]
        assert protocol.config_hash(body["settings"]) == h1


def test_micropython_depth_limit_is_a_protocol_error_too():
    out = micropython_json(
        "import json\n"
        "from kiosk import protocol\n"
        "s = json.loads('{\"a\":' + '[' * 3000 + ']' * 3000 + '}')\n"
        "try:\n"
        "    protocol.config_hash(s)\n"
        "    print(json.dumps('accepted'))\n"
        "except protocol.ProtocolError as e:\n"
        "    print(json.dumps(e.reason))\n"
    )
    assert out == ["bad_value"]


JSON_NO_FLOAT = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.text(max_size=8), JSON_NO_FLOAT, max_size=6))
def test_canonical_matches_cpython_json_without_floats(obj):
    try:
        text = protocol.canonical(obj)
    except protocol.ProtocolError:
        return  # nested past MAX_DEPTH (not reachable with these sizes, but allowed)
    assert text == json.dumps(obj, sort_keys=True, separators=(",", ":"))
