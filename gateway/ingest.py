"""MQTT ingest: paho-mqtt 2.x on MQTT 5 with a persistent session and manual acks.

The paho network thread only parses and validates; a writer thread commits batches to SQLite
and acknowledges each message after the transaction that holds it is durable. A crash before
the commit leaves the messages unacknowledged, so the broker redelivers them to our session
and the dedup key makes the retry harmless.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.store import Accepted, Rejected, Store
from kiosk import protocol

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue through a week-long gateway outage
BATCH_MAX = 100  # below the broker's max_inflight_messages, so a whole batch can be in flight
BATCH_WAIT_S = 0.02


@dataclass
class IngestStats:
    received: int = 0
    batches: int = 0
    outcome: dict[str, int] = field(default_factory=dict)
    connected: bool = False


def now_ms() -> int:
    return int(time.time() * 1000)


class Ingest:
    def __init__(self, store: Store, host: str, port: int, client_id: str, keepalive_s: int = 30,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.clock = clock
        self.stats = IngestStats()
        self._queue: queue.Queue[tuple[int, int, Accepted | Rejected] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                                  manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self._keepalive = keepalive_s
        self.ready = threading.Event()  # set once subscribed

    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._writer.start()
        self.client.reconnect_delay_set(0.5, 10)
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive, clean_start=False,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self._queue.put(None)
        self._writer.join(10)

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            return
        self.stats.connected = True
        # No Local: in city mode the gateway also publishes under screening/v1 and must not hear itself.
        options = SubscribeOptions(qos=1, noLocal=True)
        client.subscribe(protocol.ALL_VERSIONS, options=options)
        self.ready.set()

    def _on_disconnect(self, *_args: Any) -> None:
        self.stats.connected = False
        self.ready.clear()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self.stats.received += 1
        try:
            checkpoint, kiosk, channel, body = protocol.parse_message(msg.topic, msg.payload)
            item: Accepted | Rejected = Accepted(checkpoint, kiosk, channel, body, self.clock())
            if channel in protocol.NEVER_STORED or kiosk == protocol.GATEWAY_ID:
                item = Accepted(checkpoint, kiosk, channel, {}, self.clock())  # counted, never kept
        except protocol.ProtocolError as err:
            item = Rejected(err.reason)
        except Exception:  # noqa: BLE001 - a payload must never stop the gateway
            item = Rejected("internal")
        self._queue.put((msg.mid, msg.qos, item))

    def _write_loop(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + BATCH_WAIT_S
            while len(batch) < BATCH_MAX:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
            outcome = self.store.write_batch(item for _, _, item in batch)
            for mid, qos, _ in batch:  # only now is every message of the batch on disk
                self.client.ack(mid, qos)
            self.stats.batches += 1
            for key, n in outcome.items():
                self.stats.outcome[key] = self.stats.outcome.get(key, 0) + n
