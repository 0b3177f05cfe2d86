"""Malformed payloads published by hand (mosquitto_pub) to every channel: rejected, counted by
reason, and the gateway keeps ingesting good events afterwards."""
from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from kiosk import protocol
from tests.services import GatewayProc, wait_until

CP, KIOSK = "cp-bad", "k1"


def mosquitto_pub(port: int, topic: str, payload: bytes) -> None:
    exe = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    subprocess.run([exe, "-h", "127.0.0.1", "-p", str(port), "-V", "mqttv5", "-q", "1", "-t", topic, "-s"],
                   input=payload, check=True, timeout=10)


def good_event(seq: int) -> bytes:
    body = protocol.event("e1", seq, 1, 1_700_000_000_000, 5, "L1", "in", "boot", "00000000",
                          {"fw": "test", "board": "test"})
    return protocol.encode(body)


def cases() -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected reason) for every channel, plus topic-level mistakes."""
    out = []
    for channel in protocol.KIOSK_CHANNELS:
        t = protocol.topic(CP, KIOSK, channel)
        out += [(t, b"\xff\xfe not utf-8", "not_utf8"), (t, b"{not json", "not_json"),
                (t, b"[1, 2]", "not_object"), (t, b"{" + b" " * protocol.MAX_PAYLOAD + b"}", "too_large")]
        if channel != protocol.STATUS:
            out.append((t, b'{"v": 99}', "bad_version"))
    t_event = protocol.topic(CP, KIOSK, protocol.EVENT)
    out += [
        (t_event, b'{"v": 1, "epoch": "e1"}', "missing_field"),
        (t_event, good_event(1).replace(b'"seq":1', b'"seq":"1"'), "bad_type"),
        (t_event, good_event(1).replace(b'"dir":"in"', b'"dir":"up"'), "bad_value"),
        (f"screening/v1/{CP}/_k1/event", good_event(1), "reserved_id"),
        (f"screening/v1/{CP}/bad.id/event", good_event(1), "bad_id"),
        (f"screening/v1/{CP}/{KIOSK}/nonsense", good_event(1), "unknown_channel"),
        (f"screening/v2/{CP}/{KIOSK}/event", good_event(1), "bad_version"),
        (f"screening/v1/{CP}/{KIOSK}/event/extra", good_event(1), "bad_topic"),
        (protocol.topic(CP, KIOSK, protocol.VERIFY), b'{"id": "r1", "kind": "health", "raw": 5}', "bad_type"),
        (protocol.topic(CP, KIOSK, protocol.CMD), b'{"id": "c1", "name": "format_disk", "args": {}, "expires": 1}',
         "bad_value"),
    ]
    return out


@pytest.mark.skipif(not (shutil.which("mosquitto_pub") or Path("/usr/bin/mosquitto_pub").exists()),
                    reason="mosquitto-clients not installed")
def test_malformed_payloads_are_rejected_counted_and_harmless(gateway: GatewayProc) -> None:
    port = gateway.broker_port
    expected = Counter()
    for topic, payload, reason in cases():
        mosquitto_pub(port, topic, payload)
        expected[reason] += 1
    total = sum(expected.values())
    rejects = wait_until(lambda: (r := gateway.get("/api/rejects")) and sum(r.values()) >= total and r, 20,
                         "every malformed message counted")
    assert rejects == dict(expected)
    # Still alive and still ingesting: a valid event after the garbage is stored.
    mosquitto_pub(port, protocol.topic(CP, KIOSK, protocol.EVENT), good_event(2))
    wait_until(lambda: gateway.get("/api/events/count")["events"] == 1, 10, "the good event stored")
    assert gateway.proc.poll() is None
    assert gateway.get("/healthz")["ok"]
