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
- The paho network thread only parses and validates (`protocol.parse_message` plus the gateway's
  range checks) and hands each message to the writer thread through a queue; it never touches
  the disk and never blocks. The broker bounds that queue: it has at most Receive Maximum
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
from gateway.store import Accepted, BatchResult, Rejected, SQLiteStore
from kiosk import protocol

log = logging.getLogger("gateway.ingest")

SESSION_EXPIRY_S = 7 * 24 * 3600  # the broker keeps our queue through a week-long gateway outage
BATCH_MAX = 100
BATCH_WAIT_S = 0.0
MAX_INT = 2**53  # beyond this a JSON number is not an exact integer anywhere (JS dashboards, doubles)
TEMP_RANGE = (-80.0, 150.0)  # degC: anything outside is not a reading, it is garbage
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


@dataclass(frozen=True)
class Limits:
    """The gateway's own range checks on top of the contract."""
    max_future_ms: int = 86_400_000
    min_ts_ms: int = 1_577_836_800_000  # 2020-01-01: earlier is a kiosk clock that never synced properly

    def check(self, channel: str, body: dict[str, Any], now: int) -> None:
        for name in ("seq", "boot", "uptime_ms", "distance_cm", "lost"):
            v = body.get(name)
            if isinstance(v, int) and v > MAX_INT:
                raise protocol.ProtocolError("out_of_range", f"{name} over 2^53")
        if channel == protocol.EVENT:
            ts = body.get("ts")
            if isinstance(ts, int):
                if ts > now + self.max_future_ms:
                    raise protocol.ProtocolError("ts_future", f"ts {ts} is {(ts - now) // 1000} s ahead")
                if ts < self.min_ts_ms:
                    raise protocol.ProtocolError("ts_past", f"ts {ts} before {self.min_ts_ms}")
            for name in ("temp_c", "skin_c", "ambient_c"):
                v = body.get(name)
                if isinstance(v, (int, float)) and not TEMP_RANGE[0] <= v <= TEMP_RANGE[1]:
                    raise protocol.ProtocolError("out_of_range", f"{name} {v!r}")


# What the durable session subscribes to (any version, so other versions are counted, not unseen).
DURABLE_FILTERS = ((f"screening/+/+/+/{protocol.STATUS}", 1), (f"screening/+/+/+/{protocol.EVENT}", 1),
                   (f"screening/+/+/+/{protocol.ACK}", 1), (f"screening/+/+/+/{protocol.TELEMETRY}", 0))
DURABLE_CHANNELS = tuple(f.rsplit("/", 1)[1] for f, _ in DURABLE_FILTERS)

Item = tuple[int, int, Accepted | Rejected, float]  # mid, qos, item, time.time() on arrival


class Ingest:
    def __init__(self, store: SQLiteStore, host: str, port: int, client_id: str, keepalive_s: int = 30,
                 clock: Clock | None = None, batch_max: int = BATCH_MAX, batch_wait_s: float = BATCH_WAIT_S,
                 session_expiry_s: int = SESSION_EXPIRY_S, receive_maximum: int = 1000,
                 max_outbound_inflight: int = 1000, limits: Limits | None = None, dead_letter_payload_max: int = 2048,
                 on_committed: Callable[[BatchResult, list[Item]], None] | None = None,
                 on_connected: Callable[[], None] | None = None) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.clock: Clock = clock or SystemClock()
        self.stats = IngestStats()
        self.batch_max = batch_max
        self.batch_wait_s = batch_wait_s
        self.session_expiry_s = session_expiry_s
        self.receive_maximum = receive_maximum
        self.limits = limits or Limits()
        self.dead_letter_payload_max = dead_letter_payload_max
        self.on_committed = on_committed
        self.on_connected = on_connected
        self._queue: queue.Queue[Item | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)
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
        self.watch.on_disconnect = lambda *_a: (self._watch_ready.clear(), self.ready.clear())
        self.watch.on_message = self._on_watch_message
        self._stopping = False

    # ---- lifecycle ----
    def start(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        self._writer.start()
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

    def stop(self) -> None:
        self._stopping = True
        self.watch.disconnect()
        self.watch.loop_stop()
        self.client.disconnect()
        self.client.loop_stop()
        self._queue.put(None)
        self._writer.join(10)

    def queue_depth(self) -> int:
        return self._queue.qsize()

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
        arrived = time.time()
        now = self.clock.now_ms()
        item: Accepted | Rejected
        try:
            checkpoint, kiosk, channel, body = protocol.parse_message(msg.topic, msg.payload)
            if channel in protocol.NEVER_STORED or kiosk == protocol.GATEWAY_ID:
                item = Accepted(checkpoint, kiosk, channel, {}, now)  # counted, never kept
            else:
                self.limits.check(channel, body, now)
                raw = bytes(msg.payload).decode() if channel == protocol.EVENT else None
                item = Accepted(checkpoint, kiosk, channel, body, now, raw)
        except protocol.ProtocolError as err:
            item = self._rejected(msg, err.reason, err.detail, now)
        except Exception as err:  # noqa: BLE001 - a payload must never stop the gateway
            item = self._rejected(msg, "internal", type(err).__name__, now)
        self._queue.put((msg.mid, msg.qos, item, arrived))

    def _rejected(self, msg: paho.MQTTMessage, reason: str, detail: str, now: int) -> Rejected:
        self.stats.rejects[reason] = self.stats.rejects.get(reason, 0) + 1
        last = msg.topic.rsplit("/", 1)[-1]
        keep = last not in protocol.NEVER_STORED  # raw codes: never dead-lettered
        payload = bytes(msg.payload[:self.dead_letter_payload_max]) if keep else None
        return Rejected(reason, detail[:200] if keep else "", msg.topic[:256], payload, now, len(msg.payload))

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
            try:
                done()
            except Exception:  # noqa: BLE001 - a bookkeeping failure must not kill paho's thread
                log.exception("publish completion failed")

    def _count_publish_failure(self, why: str) -> None:
        self.stats.publish_failures[why] = self.stats.publish_failures.get(why, 0) + 1

    def inflight(self) -> int:
        with self._inflight_lock:
            return len(self._inflight)

    # ---- the writer thread ----
    def _write_loop(self) -> None:
        done = False
        while not done:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            # Group commit: everything already queued goes into this transaction; while it commits
            # (fsync), the next batch queues up, so batches grow with the load and a lone event
            # is not held back. batch_wait_s > 0 trades latency for fewer, larger transactions.
            deadline = time.monotonic() + self.batch_wait_s
            while len(batch) < self.batch_max:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        nxt = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                if nxt is None:
                    done = True
                    break
                batch.append(nxt)
            self._commit(batch)

    def _commit(self, batch: list[Item]) -> None:
        while True:
            t0 = time.perf_counter()
            try:
                result = self._write(batch)
                break
            except Exception:  # noqa: BLE001 - the disk: keep the messages unacked and retry
                self.stats.store_errors += 1
                log.exception("store write failed; %d messages stay unacknowledged, retrying", len(batch))
                if self._stopping:
                    return
                time.sleep(1.0)
        self.stats.observe_write(time.perf_counter() - t0)
        self.stats.last_commit_monotonic = time.monotonic()
        for mid, qos, _, _ in batch:  # only now is every message of the batch on disk
            if qos > 0:
                rc = self.client.ack(mid, qos)
                if rc != paho.MQTT_ERR_SUCCESS:  # disconnected: the broker redelivers, dedup drops it
                    self.stats.ack_failures += 1
        self.stats.batches += 1
        for key, n in result.outcome.items():
            self.stats.outcome[key] = self.stats.outcome.get(key, 0) + n
        if self.on_committed is not None:
            try:
                self.on_committed(result, batch)
            except Exception:  # noqa: BLE001
                log.exception("post-commit hook failed")

    def _write(self, batch: list[Item]) -> BatchResult:
        try:
            return self.store.write_batch(item for _, _, item, _ in batch)
        except Exception:  # noqa: BLE001 - find the message that cannot be stored, keep the rest
            if len(batch) == 1 and isinstance(batch[0][2], Rejected):
                raise
        merged = BatchResult({})
        for i, (mid, qos, item, t) in enumerate(batch):
            try:
                r = self.store.write_batch([item])
            except Exception as err:  # noqa: BLE001
                log.warning("message rejected by the store: %s", err)
                self.stats.store_errors += 1
                bad = Rejected("store_error", type(err).__name__, "", None, self.clock.now_ms())
                batch[i] = (mid, qos, bad, t)
                r = self.store.write_batch([bad])  # raises if the disk itself is broken
            for key, n in r.outcome.items():
                merged.outcome[key] = merged.outcome.get(key, 0) + n
            merged.alerts += r.alerts
        return merged
