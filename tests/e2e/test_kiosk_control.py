"""The gateway's side of the kiosk: commands get their acks, pushed config is applied or refused."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk import config, protocol
from sim.checkpoint import Checkpoint
from tests.services import GatewayProc, async_wait_until

CP = "cp-ctl"


class Operator:
    """A real MQTT 5 client standing in for the gateway's fleet module: publishes, collects replies."""

    def __init__(self, port: int, kiosk: str) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.kiosk = kiosk
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_connect = lambda c, *_: c.subscribe([(protocol.topic(CP, kiosk, ch), 1)
                                                            for ch in (protocol.ACK, protocol.STATUS)])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic.rsplit("/", 1)[1], json.loads(msg.payload)))

    def got(self, channel: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for ch, body in self.messages if ch == channel]

    def publish(self, channel: str, body: dict[str, Any] | bytes, retain: bool = False) -> None:
        payload = body if isinstance(body, bytes) else protocol.encode(body)
        self.client.publish(protocol.topic(CP, self.kiosk, channel), payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_commands_and_pushed_config(tmp_path: Path, gateway: GatewayProc) -> None:
    cp = Checkpoint(CP, 1, seed=11, broker_port=gateway.broker_port, run_dir=tmp_path)
    kiosk = cp.kiosks[0]
    op = Operator(gateway.broker_port, kiosk.kiosk)

    def ack(cmd_id: str) -> dict[str, Any] | None:
        return next((a for a in op.got("ack") if a["id"] == cmd_id), None)

    async def scenario() -> None:
        await cp.start()
        await async_wait_until(lambda: any(s["state"] == "online" for s in op.got("status")), 10, "kiosk online")
        far = int(time.time() * 1000) + 60_000
        op.publish(protocol.CMD, protocol.command("c1", "selftest", {}, far))
        op.publish(protocol.CMD, protocol.command("c2", "selftest", {}, 1_000))  # expired long ago
        op.publish(protocol.CMD, b'{"id": "c3", "name": "format_disk", "args": {}, "expires": %d}' % far)
        for cmd_id in ("c1", "c2", "c3"):
            await async_wait_until(lambda: ack(cmd_id), 10, f"ack for {cmd_id}")
        # A redelivered command id is acknowledged again, never acted on twice.
        op.publish(protocol.CMD, protocol.command("c1", "selftest", {}, far))
        await async_wait_until(lambda: len([a for a in op.got("ack") if a["id"] == "c1"]) == 2, 10, "second c1 ack")

        good = {"fever_c": 37.5}
        op.publish(protocol.CONFIG, protocol.config_message(good), retain=True)
        want = config.expected_hash(good, kiosk.app.config.local)
        await async_wait_until(lambda: any(s.get("config_hash") == want for s in op.got("status")), 10,
                               "status reports the applied config")
        op.publish(protocol.CONFIG, protocol.config_message({"fever_c": 39.9, "kiosk": "k99"}), retain=True)
        await async_wait_until(lambda: any(e["type"] == "fault" and e["part"] == "config"
                                           for e in kiosk.board.ledger), 10, "config fault event")
        await cp.stop()

    try:
        asyncio.run(scenario())
    finally:
        op.close()
    c1, c2, c3 = ack("c1"), ack("c2"), ack("c3")
    assert c1 and c1["ok"] is True, c1  # the simulated kiosk's parts are all up
    assert c2 and c2["ok"] is False and "expired" in c2["detail"]
    assert c3 and c3["ok"] is False
    assert [a["ok"] for a in op.got("ack") if a["id"] == "c1"] == [True, True]
    assert kiosk.app.cfg["fever_c"] == 37.5, "the rejected push left the applied config alone"
    fault = next(e for e in kiosk.board.ledger if e["type"] == "fault" and e["part"] == "config")
    assert "fever_c" in fault["detail"] and "kiosk" in fault["detail"]
