"""A broker outage during which >= 3,000 events queue (virtual lane time: one event every 5 s, over
4 h of traffic) loses nothing, and the backlog drains in order afterwards. The kiosk side is the
firmware's Link + the flash Outbox on simulated littlefs (2 MiB, as a 4 MB ESP32); the broker is a
real mosquitto, stopped and started on the same port."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from kiosk import link, nvstate, outbox, protocol
from sim.board.clock import SimClock
from sim.board.flash import LittleFSFlash
from sim.broker import Broker
from tests.services import async_wait_until

OUTAGE_EVENTS = 3200
CP, KIOSK = "cp-out", "k1"


class GatedBoard:
    """clock + open_connection; `up` False makes connects fail (so the test can bring its
    subscriber back before the kiosk reconnects)."""

    def __init__(self) -> None:
        self.clock = SimClock()
        self.up = True

    async def open_connection(self, host: str, port: int) -> Any:
        if not self.up:
            raise OSError(111, "connection refused")
        return await asyncio.open_connection(host, port)


class Subscriber:
    def __init__(self, port: int) -> None:
        self.seqs: list[int] = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(protocol.topic(CP, KIOSK, "event"), qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.ready.wait(10)

    def _message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self.lock:
            self.seqs.append(json.loads(msg.payload)["seq"])

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _event(st: nvstate.NVState, i: int) -> dict[str, Any]:
    code = protocol.code_info("health", "green", "%032x" % (i * 2654435761 % 2 ** 128))
    return protocol.event(st.epoch, st.take_seq(), st.boot, 1_760_000_000_000 + i * 5000, i * 5000, "L1", "in",
                          "screening", "abcd1234",
                          {"result": "pass", "measured": "pass", "temp_c": 36.5, "skin_c": 34.25, "ambient_c": 18.0,
                           "distance_cm": 55, "code": code, "paired": True, "in_range": True,
                           "uncertainty_c": 0.2, "people": 1})


async def _scenario(broker: Broker) -> dict[str, Any]:
    flash = LittleFSFlash()
    st = nvstate.NVState(flash).load()
    st.count_boot()
    ob = outbox.Outbox(flash)
    st.resume(ob.last_seq)
    board = GatedBoard()
    status = protocol.topic(CP, KIOSK, "status")
    birth = protocol.encode(protocol.status_online("t", "b", st.boot, st.epoch, "abcd1234", None))
    lk = link.Link(board, "127.0.0.1", broker.port, client_id=CP + "-" + KIOSK, keepalive_s=5,
                   will=(status, b"{}"), subscriptions=[protocol.topic(CP, KIOSK, "cmd")], outbox=ob, event_topic=protocol.topic(CP, KIOSK, "event"),
                   birth=lambda: (status, birth), on_message=lambda t, p, r=False: None, on_fault=lambda d: None)
    sub = Subscriber(broker.port)
    task = asyncio.create_task(lk.run())
    try:
        created = []
        for i in range(50):
            body = _event(st, i)
            assert ob.append(body)
            created.append(body["seq"])
        lk.poke()
        await async_wait_until(lambda: ob.depth() == 0 and lk.connected, 20, "first events delivered")

        sub.close()
        broker.stop()
        await async_wait_until(lambda: not lk.connected, 30, "the link noticed the outage")
        board.up = False
        for i in range(50, 50 + OUTAGE_EVENTS):
            body = _event(st, i)
            assert ob.append(body), "outbox full during the outage"
            created.append(body["seq"])
            if i % 200 == 0:
                await asyncio.sleep(0)  # the link keeps trying while people keep coming
        queued = ob.depth()
        segments = len([n for n in flash.listdir("outbox") if n.endswith(".seg")])
        window = len(ob._win)

        broker.start()
        sub = Subscriber(broker.port)
        board.up = True
        t0 = time.monotonic()
        await async_wait_until(lambda: ob.depth() == 0, 120, "the backlog drained")
        drain_s = time.monotonic() - t0
        await async_wait_until(lambda: len(set(sub.seqs)) >= OUTAGE_EVENTS, 20, "subscriber got the backlog")
    finally:
        lk.stop()
        task.cancel()
        sub.close()
    return {"created": created, "received": list(sub.seqs), "queued": queued, "segments": segments,
            "window": window, "drain_s": drain_s, "sessions": lk.sessions, "seq_saves": st.saves}


def test_outage_of_3000_events_loses_nothing_and_drains_in_order(broker: Broker) -> None:
    got = asyncio.run(_scenario(broker))
    outage = got["created"][50:]
    assert got["queued"] == OUTAGE_EVENTS
    assert got["window"] <= outbox.WINDOW, "RAM holds a window, not the backlog"
    first_seen: list[int] = []
    seen: set[int] = set()
    for s in got["received"]:
        if s not in seen:
            seen.add(s)
            first_seen.append(s)
    assert set(outage) <= seen, "nothing lost"
    assert first_seen == sorted(first_seen), "drained in order"
    assert got["seq_saves"] <= (len(got["created"]) // nvstate.SEQ_BLOCK) + 3, "seq not saved per event"
    print(f"\noutage: {got['queued']} queued in {got['segments']} segments, drained in {got['drain_s']:.1f} s "
          f"({got['queued'] / got['drain_s']:.0f} events/s), {len(got['received'])} received, "
          f"{got['seq_saves']} state saves for {len(got['created'])} events")
