"""MQTT ingest: paho-mqtt 2.x on MQTT 5 with a persistent session and manual acks.

Two MQTT sessions (DESIGN.md section 4 says verify/verdict are never stored - not by the broker either):
- the durable one (client id `mqtt.client_id`, persistent session, manual acks) subscribes only to
  what must survive a gateway outage: `screening/+/+/+/{status,event,ack}` at QoS 1 and telemetry
  at QoS 0 (never queued). A `screening/#` subscription in a persistent session would make
  mosquitto queue kiosks' `verify` requests (raw codes) for us while we are down, and write them
  into mosquitto.db.
- a watcher (`<client_id>-watch`, clean start, QoS 0, nothing queued) subscribes `screening/#`
  and counts everything else: malformed topics, unknown channels, verify/verdict (counted, never
  kept), other versions' odd channels. It skips the durable session's topics.

Failure contract:
- The first connect and every later outage are handled by paho's own reconnect loop
  (`connect_async` + `loop_start`, backoff 1-10 s); subscriptions are renewed in `on_connect`.
- The paho network thread only hands each message's bytes to the writer (gateway/writer.py: a
  worker process by default, which validates with `protocol.parse_message` plus the gateway's
  range checks and writes); it never touches the disk and never blocks. The broker bounds what
  waits there: it has at most Receive Maximum
  (mosquitto: max_inflight_messages) un-acked QoS 1 messages in flight to us.
- The writer commits batches (up to store.batch_max) in one transaction and acknowledges each
  message only after the commit that holds it returned. A crash before the commit leaves them
  unacknowledged, so the broker redelivers them to our session and the dedup key makes the retry
  harmless. If the store fails, the batch is retried one message at a time (a message that alone
  cannot be stored is rejected as `store_error` and dead-lettered); if even that fails (disk
  full), nothing is acknowledged and the batch is retried after a pause.
- Every paho call's return code is checked: a failed ack or publish is counted, never ignored
  silently; our own publishes are bounded (paho refuses more than 65,535 in flight).
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.clock import Clock, SystemClock
from gateway.store import BatchResult, SQLiteStore
from gateway.writer import Limits, Outcome, ProcessWriter, StoreArgs, ThreadWriter
from kiosk import protocol

log = logging.getLogger("gateway.ingest")

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue through a week-long gateway outage
BATCH_MAX = 100
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass
class IngestStats:
    received: int = 0
    batches: int = 0
    outcome: dict[str, int] = field(default_factory=dict)
    rejects: dict[str, int] = field(default_factory=dict)
    connected: bool = False
    connects: int = 0
    ack_failures: int = 0
    publish_failures: dict[str, int] = field(default_factory=dict)
    store_errors: int = 0
    write_latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    write_latency_sum_s: float = 0.0
    write_latency_count: int = 0
    last_commit_monotonic: float = 0.0
    started_monotonic: float = field(default_factory=time.monotonic)

    def observe_write(self, seconds: float) -> None:
        i = next((i for i, b in enumerate(LATENCY_BUCKETS_S) if seconds <= b), len(LATENCY_BUCKETS_S))
        self.write_latency_buckets[i] += 1
        self.write_latency_sum_s += seconds
        self.write_latency_count += 1


def now_ms() -> int:
    return SystemClock().now_ms()


# What the durable session subscribes to (any version, so other versions are counted, not unseen).
DURABLE_FILTERS = ((f"screening/+/+/+/{protocol.STATUS}", 1), (f"screening/+/+/+/{protocol.EVENT}", 1),
                   (f"screening/+/+/+/{protocol.ACK}", 1), (f"screening/+/+/+/{protocol.TELEMETRY}", 0))
DURABLE_CHANNELS = tuple(f.rsplit("/", 1)[1] for f, _ in DURABLE_FILTERS)

# Per received message, kept until its batch is committed: mid, qos, time.time() on arrival, payload.
Item = tuple[int, int, float, bytes]


class Ingest:
    def __init__(self, store: SQLiteStore, host: str, port: int, client_id: str, keepalive_s: int = 30,
                 clock: Clock | None = None, batch_max: int = BATCH_MAX,
                 session_expiry_s: int = SESSION_EXPIRY_S, receive_maximum: int = 1000,
                 max_outbound_inflight: int = 1000, limits: Limits | None = None, dead_letter_payload_max: int = 2048,
                 on_committed: Callable[[BatchResult, list[Item]], None] | None = None,
                 on_connected: Callable[[], None] | None = None, writer: str = "thread",
                 store_args: StoreArgs | None = None) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.clock: Clock = clock or SystemClock()
        self.stats = IngestStats()
        self.batch_max = batch_max
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.limits = limits or Limits()
        self.dead_letter_payload_max = dead_letter_payload_max
        self.on_committed = on_committed
        self.on_connected = on_connected
        self.writer: ThreadWriter | ProcessWriter
        if writer == "process":
            if store_args is None:
                raise ValueError("the process writer needs store_args (it opens its own connection)")
            self.writer = ProcessWriter(store_args, self.limits, batch_max, self._done, self._writer_died)
        else:
            self.writer = ThreadWriter(store, self.limits, dead_letter_payload_max, batch_max, self._done)
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5,
                                  manual_ack=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self._keepalive = keepalive_s
        self._max_inflight = max_outbound_inflight
        self._inflight: dict[int, Callable[[], None] | None] = {}
        self._inflight_lock = threading.Lock()
        self.ready = threading.Event()  # set once both sessions are subscribed
        self._durable_ready = threading.Event()
        self._watch_ready = threading.Event()
        self.watch = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id + "-watch", protocol=paho.MQTTv5)
        self.watch.on_connect = self._on_watch_connect
        self.watch.on_subscribe = self._on_watch_subscribe
        self.watch.on_disconnect = self._on_watch_disconnect
        self.watch.on_message = self._on_watch_message
        self._stopping = False
        self._completions: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._completer = threading.Thread(target=self._complete_loop, name="ingest-puback", daemon=True)

    # ---- lifecycle ----
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self._completer.start()
        self.client.reconnect_delay_set(1, 10)
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive, clean_start=False,
                                  properties=props)
        rc = self.client.loop_start()
        if rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"paho loop_start failed: {paho.error_string(rc)}")
        self.watch.reconnect_delay_set(1, 10)
        self.watch.connect_async(self.host, self.port, keepalive=self._keepalive, clean_start=True)
        rc = self.watch.loop_start()
        if rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"paho loop_start failed: {paho.error_string(rc)}")
        # Started after the sessions connect (it takes a moment); what arrives meanwhile waits for it.
        self.writer.start()

    def stop(self) -> None:
        self._stopping = True
        self.watch.disconnect()
        self.watch.loop_stop()
        self.writer.stop()  # what was received is written and acknowledged first
        self.client.disconnect()
        self.client.loop_stop()
        self._completions.put(None)
        self._completer.join(5)

    def queue_depth(self) -> int:
        return self.writer.depth()

    # ---- paho callbacks (network thread: no disk, no blocking) ----
    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self.stats.connected = True
        self.stats.connects += 1
        # Sessions made by earlier gateways subscribed screening/# (queueing verify): drop that.
        client.unsubscribe(protocol.ALL_VERSIONS)
        # No Local: in city mode the gateway also publishes under screening/v1 and must not hear itself.
        rc, _mid = client.subscribe([(f, SubscribeOptions(qos=q, noLocal=True)) for f, q in DURABLE_FILTERS])
        if rc != paho.MQTT_ERR_SUCCESS:
            log.error("subscribe failed: %s", paho.error_string(rc))
            client.disconnect()  # the loop reconnects and we try again
            return
        with self._inflight_lock:
            self._inflight.clear()  # unacked publishes of the old connection: re-sent from the store by the timers

    def _on_subscribe(self, client: paho.Client, _userdata: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("broker refused the subscription: %s", reasons)
            return
        self._durable_ready.set()
        if self._watch_ready.is_set():
            self.ready.set()
        if self.on_connected is not None:
            self.on_connected()

    def _on_disconnect(self, *_args: Any) -> None:
        self.stats.connected = False
        self._durable_ready.clear()
        self.ready.clear()

    def _on_watch_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            return
        rc, _mid = client.subscribe(protocol.ALL_VERSIONS, options=SubscribeOptions(qos=0))
        if rc != paho.MQTT_ERR_SUCCESS:
            log.error("watch subscribe failed: %s", paho.error_string(rc))
            client.disconnect()

    def _on_watch_disconnect(self, *_args: Any) -> None:
        self._watch_ready.clear()
        self.ready.clear()

    def _on_watch_subscribe(self, _c: paho.Client, _u: Any, _mid: int, reasons: list[Any], _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            log.error("broker refused the watch subscription: %s", reasons)
            return
        self._watch_ready.set()
        if self._durable_ready.is_set():
            self.ready.set()

    def _on_watch_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        if len(parts) == 5 and parts[4] in DURABLE_CHANNELS:
            return  # the durable session has it
        self._on_message(client, userdata, msg)

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        self.stats.received += 1
        payload = bytes(msg.payload)
        self.writer.submit((msg.topic, payload, self.clock.now_ms()), (msg.mid, msg.qos, time.time(), payload))

    # ---- our own publishes (alerts, reports, config, commands) ----
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_done: Callable[[], None] | None = None, expiry_s: int | None = None) -> bool:
        """Queue a publish; never blocks. False when not connected, too many in flight, or paho
        refused: the caller keeps it unpublished in the store and the timers try again."""
        if not self.stats.connected:
            self._count_publish_failure("no_connection")
            return False
        with self._inflight_lock:
            if len(self._inflight) >= self._max_inflight:
                self._count_publish_failure("inflight_full")
                return False
            props = None
            if expiry_s is not None:
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.MessageExpiryInterval = expiry_s
            info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=props)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                self._count_publish_failure(paho.error_string(info.rc))
                return False
            if qos == 0:
                if on_done:
                    on_done()
                return True
            self._inflight[info.mid] = on_done
        return True

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: Any, _props: Any) -> None:
        with self._inflight_lock:
            done = self._inflight.pop(mid, None)
        if reason is not None and getattr(reason, "is_failure", False):
            self._count_publish_failure("puback_" + str(reason))
            return
        if done is not None:
            self._completions.put(done)  # it writes to the store: not on paho's network thread

    def _complete_loop(self) -> None:
        while True:
            done = self._completions.get()
            if done is None:
                return
            try:
                done()
            except Exception:  # noqa: BLE001 - a bookkeeping failure is logged; the timers re-publish
                log.exception("publish completion failed")

    def _count_publish_failure(self, why: str) -> None:
        self.stats.publish_failures[why] = self.stats.publish_failures.get(why, 0) + 1

    def inflight(self) -> int:
        with self._inflight_lock:
            return len(self._inflight)

    # ---- after a commit (writer thread, or the receiver of the writer process) ----
    def _done(self, batch: list[Item], outcome: Outcome) -> None:
        for mid, qos, _, _ in batch:  # only now is every message of the batch on disk
            if qos > 0:
                rc = self.client.ack(mid, qos)
                if rc != paho.MQTT_ERR_SUCCESS:  # disconnected: the broker redelivers, dedup drops it
                    self.stats.ack_failures += 1
        st = self.stats
        st.observe_write(outcome.write_s)
        st.last_commit_monotonic = time.monotonic()
        st.batches += 1
        st.store_errors += outcome.store_errors
        for key, n in outcome.result.outcome.items():
            st.outcome[key] = st.outcome.get(key, 0) + n
        for key, n in outcome.rejects.items():
            st.rejects[key] = st.rejects.get(key, 0) + n
        if self.on_committed is not None:
            try:
                self.on_committed(outcome.result, batch)
            except Exception:  # noqa: BLE001
                log.exception("post-commit hook failed")

    def _writer_died(self) -> None:
        """The writer process died: drop the connection (paho reconnects by itself) so the broker
        redelivers what we never acknowledged."""
        self.ready.clear()
        sock = self.client.socket()
        if isinstance(sock, socket.socket):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
