"""A kiosk that boots without a clock takes the time from the gateway's live summary, and events it
made before that leave with a real `ts` filled in from the sync (DESIGN section 4)."""
from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kiosk import protocol
from sim.board.clock import SimClock
from sim.broker import Broker
from sim.checkpoint import Checkpoint
from tests.services import async_wait_until

GATEWAY_TIME_MS = 1_900_000_000_000  # 2030: far from the host clock, so a fill-in from it is unmistakable


def test_unsynced_kiosk_takes_gateway_time_and_fills_in_ts(tmp_path: Path) -> None:
    received: list[dict] = []
    lock = threading.Lock()
    with Broker(tmp_path / "broker") as broker:
        cp = Checkpoint("cp-clock", 1, seed=12, broker_port=broker.port, run_dir=tmp_path, warmup_ms=500)
        k = cp.kiosks[0]
        k.board.clock.synced = False  # no NTP, RTC unset: a kiosk just powered up at a roadside
        summary = protocol.gateway_topic("cp-clock", protocol.SUMMARY)

        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        subscribed = threading.Event()
        client.on_subscribe = lambda *_: subscribed.set()
        client.on_connect = lambda c, *_: c.subscribe(protocol.topic("cp-clock", k.kiosk, protocol.EVENT), qos=1)

        def on_message(_c: object, _u: object, msg: paho.MQTTMessage) -> None:
            with lock:
                received.append(json.loads(msg.payload))

        client.on_message = on_message
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        assert subscribed.wait(10)

        # A retained summary from an hour ago, there before the kiosk subscribes: it arrives flagged
        # retained (possibly stale) and must not set the clock.
        stale = {"v": 1, "ts": GATEWAY_TIME_MS - 3_600_000, "counts": {}}
        client.publish(summary, protocol.encode(stale), qos=1, retain=True).wait_for_publish(5)

        async def scenario() -> None:
            await cp.start()
            await async_wait_until(lambda: k.app.link.connected, 10, "connected")
            await asyncio.sleep(1.0)  # connected but unsynced: events are held back, not sent with ts null
            with lock:
                assert received == []
            made_before_sync = list(k.board.ledger)
            assert made_before_sync and all(e["ts"] is None for e in made_before_sync)
            assert k.board.clock.time_ms() is None, "the retained summary did not set the clock"
            client.publish(summary, protocol.encode({"v": 1, "ts": GATEWAY_TIME_MS, "counts": {}}), qos=1)
            await async_wait_until(lambda: len(received) >= len(made_before_sync), 10, "held events delivered")
            await cp.stop()

        try:
            asyncio.run(scenario())
        finally:
            client.loop_stop()
            client.disconnect()
    assert k.app.clock_source == "gateway"
    boot = next(e for e in received if e["type"] == "boot")
    # Made ~1.5 s before the sync: its ts is the gateway's time minus its age, not null, not host time.
    assert 0 <= GATEWAY_TIME_MS - boot["ts"] < 30_000, boot
