"""Builders for gateway tests: contract-valid payloads, a config, a paho publisher that records PUBACKs."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config as gwconfig
from kiosk import protocol

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC = 08:00 in Shanghai


def make_config(tmp: Path, broker_port: int = 1, **sections: dict[str, Any]) -> gwconfig.Config:
    over: dict[str, dict[str, Any]] = {"mqtt": {"port": broker_port, "client_id": "gw-test"},
                                       "store": {"path": str(tmp / "gw.db"), "batch_max": 100},
                                       "report": {"directory": str(tmp / "reports")}, "http": {"port": 0}}
    for section, values in sections.items():
        over.setdefault(section, {}).update(values)
    return gwconfig.load(None, env={}, overrides=over)


def screening(seq: int, ts: int | None, result: str = "pass", temp: float = 36.5, epoch: str = "e1",
              lane: str = "L1", direction: str = "in", holder: str | None = "h1", color: str = "green",
              kind: str = "health", **extra: Any) -> dict[str, Any]:
    code = protocol.code_info(kind, color, holder) if holder is not None or color != "none" else None
    fields = {"result": result, "temp_c": temp, "skin_c": temp - 1.5, "ambient_c": 20.0, "distance_cm": 60,
              "code": code}
    fields.update(extra)
    return protocol.event(epoch, seq, 1, ts, 1000 + seq, lane, direction, "screening", "abcd1234", fields)


def fault(seq: int, ts: int, part: str, lost: int = 0, epoch: str = "e1") -> dict[str, Any]:
    fields: dict[str, Any] = {"part": part, "detail": "test"}
    if lost:
        fields["lost"] = lost
    return protocol.event(epoch, seq, 1, ts, 1000 + seq, "L1", "in", "fault", "abcd1234", fields)


def online(epoch: str = "e1", config_hash: str = "abcd1234") -> dict[str, Any]:
    return protocol.status_online("1.0.0", "esp32-test", 1, epoch, config_hash, None)


class Publisher:
    """A kiosk stand-in: a real paho MQTT 5 client publishing QoS 1, recording which mids got a PUBACK."""

    def __init__(self, port: int, client_id: str) -> None:
        self.acked: set[int] = set()
        self.lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_publish = self._on_publish
        self.client.max_inflight_messages_set(100)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            with self.lock:
                self.acked.add(mid)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        info = self.client.publish(topic, payload, qos=qos)
        assert info.rc == paho.MQTT_ERR_SUCCESS, paho.error_string(info.rc)
        return int(info.mid)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Listener:
    """Subscribes to a filter and keeps every message (topic, payload, retain)."""

    def __init__(self, port: int, topic_filter: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.cond = threading.Condition()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.subscribed.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def wait_for(self, pred: Any, timeout_s: float = 10) -> list[tuple[str, bytes, bool]]:
        with self.cond:
            ok = self.cond.wait_for(lambda: [m for m in self.messages if pred(m)], timeout_s)
            assert ok, f"no matching message in {len(self.messages)}: {self.messages[-3:]}"
            return [m for m in self.messages if pred(m)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
