"""A kiosk's side of verify/verdict, in CPython with real paho over MQTT 5, for tests and the benchmark."""
from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kiosk import protocol


@dataclass
class Received:
    topic: str
    body: dict[str, Any]
    expiry: int | None
    retain: bool
    at: float


def _no_delay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class KioskClient:
    def __init__(self, port: int, checkpoint: str = "cp-01", kiosk: str = "kiosk-01", nodelay: bool = True) -> None:
        self.checkpoint, self.kiosk = checkpoint, kiosk
        self.verdicts: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{checkpoint}-{kiosk}",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = lambda c, *_: c.subscribe(protocol.topic(checkpoint, kiosk, protocol.VERDICT), qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        if nodelay:  # what a kiosk should do too: see gateway/verdicts.py _no_delay
            self.client.on_socket_open = _no_delay
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(5):
            raise AssertionError("kiosk client did not subscribe")

    def _on_message(self, _c: paho.Client, _u: Any, msg: paho.MQTTMessage) -> None:
        expiry = getattr(msg.properties, "MessageExpiryInterval", None) if msg.properties else None
        with self._cond:
            self.verdicts.append(Received(msg.topic, json.loads(msg.payload), expiry, bool(msg.retain),
                                          time.perf_counter()))
            self._cond.notify_all()

    def send_raw(self, payload: bytes, expiry_s: int | None = protocol.VERIFY_EXPIRY_S, topic: str | None = None) -> None:
        props = Properties(PacketTypes.PUBLISH)
        if expiry_s is not None:
            props.MessageExpiryInterval = expiry_s
        info = self.client.publish(topic or protocol.topic(self.checkpoint, self.kiosk, protocol.VERIFY), payload,
                                   qos=1, properties=props)
        info.wait_for_publish(5)

    def send(self, req_id: str, kind: str, raw: str, expiry_s: int | None = protocol.VERIFY_EXPIRY_S) -> float:
        t0 = time.perf_counter()
        self.send_raw(protocol.encode(protocol.verify(req_id, kind, raw)), expiry_s)
        return t0

    def wait_for(self, req_id: str, timeout_s: float = 5) -> Received:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for r in self.verdicts:
                    if r.body.get("id") == req_id:
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no verdict for {req_id} within {timeout_s} s")
                self._cond.wait(left)

    def ask(self, req_id: str, kind: str, raw: str) -> Received:
        self.send(req_id, kind, raw)
        return self.wait_for(req_id)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
