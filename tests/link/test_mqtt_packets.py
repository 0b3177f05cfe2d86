"""MQTT 5 packet encoding: the same bytes under MicroPython and CPython, and bytes a real broker
understands (every other test that connects a kiosk to mosquitto relies on these)."""
from __future__ import annotations

import json

from kiosk import mqtt
from tests.micropython_runner import run_micropython

BUILD = """
from kiosk import mqtt
import binascii, json
packets = [
    mqtt.connect("cp1-k1", 30, 0, True, ("screening/v1/cp1/k1/status", b'{"state":"offline"}', 1, True)),
    mqtt.connect("gw", 60, 604800, False, None, "user", "secret"),
    mqtt.publish("screening/v1/cp1/k1/event", b"x" * 300, 1, False, 7),
    mqtt.publish("screening/v1/cp1/k1/verify", b"{}", 1, False, 65535, True, 5),
    mqtt.publish("t", b"", 0, True),
    mqtt.puback(258, 0x87),
    mqtt.subscribe(3, [("screening/v1/cp1/k1/config", 1), ("screening/v1/cp1/k1/cmd", 1)]),
    mqtt.PINGREQ_PACKET,
    mqtt.disconnect(),
    mqtt.varint(0) + mqtt.varint(127) + mqtt.varint(128) + mqtt.varint(16383) + mqtt.varint(2097152),
]
print(json.dumps([binascii.hexlify(p).decode() for p in packets]))
"""


def test_packets_are_identical_under_micropython_and_cpython() -> None:
    namespace: dict[str, object] = {}
    exec(BUILD.replace("print(", "namespace['out'] = ("), {"namespace": namespace})
    cpython = json.loads(str(namespace["out"]))
    upy = json.loads(run_micropython(BUILD).strip())
    assert upy == cpython
    assert cpython[-1] == "007f8001ff7f80808001"  # MQTT 5 spec 1.5.5 variable byte integer examples


def test_publish_round_trips_through_the_parser() -> None:
    packet = mqtt.publish("screening/v1/cp1/k1/verdict", b'{"id":"1"}', 1, False, 42, expiry_s=5)
    first, rest = packet[0], packet[1:]
    length, pos = mqtt._parse_varint(rest, 0)
    body = rest[pos:]
    assert len(body) == length
    topic, payload, qos, retain, pid, props = mqtt.parse_publish(first, body)
    assert (topic, payload, qos, retain, pid) == ("screening/v1/cp1/k1/verdict", b'{"id":"1"}', 1, False, 42)
    assert props[mqtt.P_MESSAGE_EXPIRY] == 5
    assert mqtt.parse_ack(mqtt.puback(42, 0x87)[2:]) == (42, 0x87)
    assert mqtt.parse_ack(b"\x00\x2a") == (42, 0)  # MQTT 5 omits a success reason code
