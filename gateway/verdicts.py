"""The verdict responder: answers each kiosk's `verify` on its `verdict` topic.

Its own paho-mqtt 2.x MQTT 5 client, apart from ingest, so a slow disk never delays a verdict;
nothing here touches a disk. The paho network thread parses and validates; a small pool of
workers runs the verifier (a plugged-in online check may block) and publishes the answer.

Behaviour (the contract is firmware/kiosk/protocol.py and firmware/PROTOCOL.md):
- Subscribes `screening/v1/+/+/verify`, QoS 1, clean start, no session kept: a request that
  arrives while the responder is down is not worth answering later (the kiosk has gone to a
  manual check within 300 ms).
- Answers on the same kiosk's `verdict` topic, QoS 1, never retained, with Message Expiry
  Interval protocol.VERIFY_EXPIRY_S.
- Honours the request's own expiry: the request is answered only until min(its remaining Message
  Expiry Interval, VERIFY_EXPIRY_S) after it arrived; later it is dropped (`expired`), not answered.
- A malformed request whose `id` is readable (a JSON object with a valid id) gets a verdict
  {"color": "none", "valid": false, "reason": "malformed_request", "holder_ref": null}, so the kiosk
  goes to a manual check at once instead of waiting; anything else malformed (bad topic, not
  JSON, no readable id) is counted by its protocol reason and not answered.
- Never logs or stores a raw code or a holder id; stats hold counts and latencies only.

Figures: `tools/bench_verdicts.py` measures the round trip through a real mosquitto.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.verifier import (ConfigError, HolderHasher, SafeVerifier, SignedPassVerifier, Verdict, Verifier,
                              load_secret)
from kiosk import protocol

log = logging.getLogger("gateway.verdicts")

SUBSCRIPTION = protocol.subscription(channel=protocol.VERIFY)
LATENCY_WINDOW = 4096  # recent latencies kept for p50/p99
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
TRUST_LIST_ENV = "CHECKPOINT_TRUST_LIST"
REVOCATIONS_ENV = "CHECKPOINT_REVOCATIONS"
PUBLISH_ERRORS = {paho.MQTT_ERR_NO_CONN: "publish_no_connection", paho.MQTT_ERR_QUEUE_SIZE: "publish_queue_full"}


@dataclass
class VerdictStats:
    received: int = 0
    answered: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)  # answered verdicts by verdict reason
    dropped: dict[str, int] = field(default_factory=dict)  # not answered: protocol reason, expired, publish_*
    connected: bool = False
    latency_buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_S) + 1))
    latency_sum_s: float = 0.0
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def drop(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def answer(self, reason: str, latency_s: float) -> None:
        with self._lock:
            self.answered += 1
            self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
            self.latency_sum_s += latency_s
            self._recent.append(latency_s)
            i = next((i for i, b in enumerate(LATENCY_BUCKETS_S) if latency_s <= b), len(LATENCY_BUCKETS_S))
            self.latency_buckets[i] += 1

    def snapshot(self) -> dict[str, Any]:
        """Counts and the gateway-side latency (receive -> publish handed to paho) over recent verdicts."""
        with self._lock:
            recent = sorted(self._recent)

            def pct(p: float) -> float | None:
                return recent[min(len(recent) - 1, int(p * len(recent)))] * 1000 if recent else None

            return {"connected": self.connected, "received": self.received, "answered": self.answered,
                    "by_reason": dict(self.by_reason), "dropped": dict(self.dropped),
                    "latency_ms_p50": pct(0.50), "latency_ms_p99": pct(0.99),
                    "latency_buckets_s": dict(zip([*map(str, LATENCY_BUCKETS_S), "+Inf"],
                                                  self.latency_buckets))}

    def prometheus(self) -> str:
        """Prometheus text lines, for the gateway's /metrics."""
        snap = self.snapshot()
        lines = ["# TYPE checkpoint_verdicts_answered_total counter"]
        lines += [f'checkpoint_verdicts_answered_total{{reason="{r}"}} {n}' for r, n in sorted(snap["by_reason"].items())]
        lines += ["# TYPE checkpoint_verdicts_dropped_total counter"]
        lines += [f'checkpoint_verdicts_dropped_total{{reason="{r}"}} {n}' for r, n in sorted(snap["dropped"].items())]
        lines += ["# TYPE checkpoint_verdict_latency_seconds histogram"]
        cumulative = 0
        for bound, n in snap["latency_buckets_s"].items():
            cumulative += n
            lines.append(f'checkpoint_verdict_latency_seconds_bucket{{le="{bound}"}} {cumulative}')
        lines.append(f"checkpoint_verdict_latency_seconds_sum {self.latency_sum_s:.6f}")
        lines.append(f"checkpoint_verdict_latency_seconds_count {cumulative}")
        lines.append(f"checkpoint_verdicts_connected {int(snap['connected'])}")
        return "\n".join(lines) + "\n"


def _no_delay(_client: paho.Client, _userdata: Any, sock: Any) -> None:
    """TCP_NODELAY: without it Nagle's algorithm holds the verdict behind our PUBACK for the request
    until the broker's delayed ACK (~40 ms on Linux) - measured: p50 88 ms round trip instead of ~1 ms."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (websockets, unix): nothing to tune
        pass


class Responder:
    def __init__(self, verifier: Verifier, host: str, port: int, client_id: str = "gateway-verdicts",
                 keepalive_s: int = 30, workers: int = 4, clock_s: Callable[[], float] = time.time) -> None:
        self.verifier = SafeVerifier(verifier)
        self.host = host
        self.port = port
        self.clock_s = clock_s  # UTC Unix seconds, for pass time windows
        self.stats = VerdictStats()
        self.ready = threading.Event()  # set once subscribed
        self._keepalive = keepalive_s
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._gate = threading.Event()
        self._gate.set()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_socket_open = _no_delay
        self.client.max_inflight_messages_set(200)
        self.client.max_queued_messages_set(10000)  # beyond it publish() says MQTT_ERR_QUEUE_SIZE: counted

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="verdict")
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        self.client.reconnect_delay_set(1, 5)
        self.client.connect_async(self.host, self.port, keepalive=self._keepalive, clean_start=True,
                                  properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        self._gate.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self.client.disconnect()
        self.client.loop_stop()
        self.ready.clear()

    def pause(self) -> None:
        """Hold the workers (maintenance, tests): requests wait, and expire if held too long."""
        self._gate.clear()

    def resume(self) -> None:
        self._gate.set()

    # ---- paho callbacks (network thread): parse, then hand off --------------------------------

    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            log.warning("broker refused the connection: %s", reason)
            return
        self.stats.connected = True
        client.subscribe(SUBSCRIPTION, qos=1)

    def _on_subscribe(self, _client: paho.Client, _userdata: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self.ready.set()
        else:
            log.error("subscription to %s refused: %s", SUBSCRIPTION, [str(r) for r in reasons])

    def _on_disconnect(self, *_args: Any) -> None:
        self.stats.connected = False
        self.ready.clear()

    def _on_message(self, _client: paho.Client, _userdata: Any, msg: paho.MQTTMessage) -> None:
        received = time.monotonic()
        self.stats.received += 1
        remaining = getattr(msg.properties, "MessageExpiryInterval", None) if msg.properties else None
        window = protocol.VERIFY_EXPIRY_S if remaining is None else min(int(remaining), protocol.VERIFY_EXPIRY_S)
        deadline = received + window
        try:
            checkpoint, kiosk, _channel, body = protocol.parse_message(msg.topic, msg.payload)
        except protocol.ProtocolError as err:
            self._malformed(msg, err.reason, deadline, received)
            return
        except Exception as err:  # noqa: BLE001 - nothing a kiosk sends may stop the responder
            log.error("verify not parsed: %s", type(err).__name__)
            self.stats.drop("internal")
            return
        topic = protocol.topic(checkpoint, kiosk, protocol.VERDICT)
        assert self._pool is not None
        try:
            self._pool.submit(self._answer, topic, body["id"], body["kind"], body["raw"], deadline, received)
        except RuntimeError:  # shutting down
            self.stats.drop("stopping")

    def _malformed(self, msg: paho.MQTTMessage, reason: str, deadline: float, received: float) -> None:
        """Answer "malformed_request" when topic and id are readable; otherwise count and stay silent."""
        try:
            checkpoint, kiosk, channel = protocol.parse_topic(msg.topic)
            if channel != protocol.VERIFY or kiosk == protocol.GATEWAY_ID:
                raise protocol.ProtocolError("unknown_channel")
            obj = protocol.decode(msg.payload)
            req_id = protocol.check_id(obj.get("id"), "id")
        except (protocol.ProtocolError, AttributeError):
            self.stats.drop(reason)
            return
        self._publish(protocol.topic(checkpoint, kiosk, protocol.VERDICT), req_id,
                      Verdict("none", False, "malformed_request", None), deadline, received)

    # ---- workers --------------------------------------------------------------------------------

    def _answer(self, topic: str, req_id: str, kind: str, raw: str, deadline: float, received: float) -> None:
        self._gate.wait()
        if time.monotonic() > deadline:
            self.stats.drop("expired")
            return
        verdict = self.verifier.verify(kind, raw, self.clock_s())
        del raw  # the code lives no longer than this call
        self._publish(topic, req_id, verdict, deadline, received)

    def _publish(self, topic: str, req_id: str, verdict: Verdict, deadline: float, received: float) -> None:
        if time.monotonic() > deadline:
            self.stats.drop("expired")
            return
        payload = protocol.encode(protocol.verdict(req_id, verdict.color, verdict.valid, verdict.reason,
                                                   verdict.holder_ref))
        props = Properties(PacketTypes.PUBLISH)
        props.MessageExpiryInterval = protocol.VERIFY_EXPIRY_S
        info = self.client.publish(topic, payload, qos=protocol.qos(protocol.VERDICT),
                                   retain=protocol.retained(protocol.VERDICT), properties=props)
        if info.rc != paho.MQTT_ERR_SUCCESS:  # paho returns, never raises, on a full queue or no connection
            self.stats.drop(PUBLISH_ERRORS.get(info.rc, f"publish_rc_{info.rc}"))
            return
        self.stats.answer(verdict.reason, time.monotonic() - received)


def build_verifier(trust_list: str | os.PathLike[str], revocations: str | os.PathLike[str] | None = None,
                   secret_file: str | os.PathLike[str] | None = None) -> SignedPassVerifier:
    """The offline signed-pass verifier from files (secret: the file, else the environment)."""
    return SignedPassVerifier(trust_list, HolderHasher(load_secret(secret_file)), revocations)


def start_from_env(host: str, port: int, client_id: str = "gateway-verdicts",
                   env: dict[str, str] | None = None) -> Responder | None:
    """Start a responder configured by the environment, for `python -m gateway run`.

    CHECKPOINT_TRUST_LIST (required to run), CHECKPOINT_REVOCATIONS (optional), and the district
    secret (CHECKPOINT_DISTRICT_SECRET_FILE or CHECKPOINT_DISTRICT_SECRET). Without a trust list
    the responder does not start (kiosks then fall back to manual checks); with a trust list but
    a bad file or secret it raises ConfigError, whose message says what to fix.
    """
    env = dict(os.environ) if env is None else env
    trust = env.get(TRUST_LIST_ENV)
    if not trust:
        log.warning("no %s: verdicts are not served, kiosks fall back to manual checks", TRUST_LIST_ENV)
        return None
    revocations = env.get(REVOCATIONS_ENV) or None
    verifier = SignedPassVerifier(Path(trust), HolderHasher(load_secret(env=env)),
                                  Path(revocations) if revocations else None)
    responder = Responder(verifier, host, port, client_id)
    responder.start()
    return responder


__all__ = ["ConfigError", "Responder", "VerdictStats", "build_verifier", "start_from_env"]
