"""The kiosk's MQTT 5 session: birth/LWT, keepalive, outbox drain, config/cmd/verdict delivery.

Why our own client: micropython-lib's umqtt.simple blocks on every socket call (a PUBACK that
never comes freezes the kiosk) and has no keepalive of its own, so a dead Wi-Fi link would never
let the broker fire our LWT. This module is a small asyncio client on `mqtt.py` packets; it
runs the same on MicroPython 1.29 and CPython (sockets come from the board).

Failure contract
- First connect: never raises. `run()` keeps trying with exponential backoff (0.5 s doubling
  to 30 s, with jitter so a checkpoint's kiosks do not reconnect in lock-step) while the kiosk
  screens offline; `connected` tells the UI.
- Outages: any socket error, a missing PINGRESP or CONNACK, or a server DISCONNECT closes the
  session and goes back to backoff. Nothing is lost: events live in the outbox until their
  PUBACK; after a reconnect the unacknowledged ones are sent again (the gateway de-duplicates).
- A PUBACK with an error reason (>= 0x80, e.g. 135 not authorised by the broker's ACL) keeps
  the record, reports a `link` fault once, and pauses draining until the next session.
- Full outbox: not this module's concern; the outbox refuses and the app reports it.
- telemetry is QoS 0 and sent only while connected; it is never queued.
"""

import asyncio
import random

from kiosk import mqtt

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
MAX_INFLIGHT = 10  # below mosquitto's default max_inflight_messages (20)
CONNECT_TIMEOUT_S = 5.0


class Link:
    def __init__(self, board, host, port, client_id, keepalive_s, will, subscriptions, outbox,
                 event_topic, birth, on_message, on_fault, session_expiry_s=0, encode=None, hold=None):
        """will: (topic, payload bytes) published retained at QoS 1 by the broker if we vanish.
        birth(): -> (topic, payload bytes) sent retained at each connect.
        on_message(topic, payload, retained) and on_fault(detail) are called from the link's task.
        encode(body) -> bytes builds an event's JSON at send time (default: the outbox's);
        hold() -> True keeps events queued for now (e.g. until the clock is synced)."""
        self._board = board
        self._clock = board.clock
        self.host = host
        self.port = port
        self.client_id = client_id
        self.keepalive_s = keepalive_s
        self.will = will
        self._subscriptions = subscriptions
        self._outbox = outbox
        self._event_topic = event_topic
        self._birth = birth
        self._on_message = on_message
        self._on_fault = on_fault
        self._session_expiry_s = session_expiry_s
        self._encode = encode or outbox.encode
        self._hold = hold
        self.connected = False
        self.connected_at = 0
        self.sessions = 0
        self.failures = 0
        self._writer = None
        self._wake = asyncio.Event()
        self._next_pid = 0
        self._inflight = {}  # packet id -> outbox record id
        self._refused = False
        self._last_tx = 0
        self._last_rx = 0
        self._stop = False

    # ---- sending from other tasks ----------------------------------------------------------

    def _pid(self):
        while True:
            self._next_pid = self._next_pid % 65535 + 1
            if self._next_pid not in self._inflight:
                return self._next_pid

    def _write(self, packet):
        # One write() per packet; only the session loop drains, so packets never interleave.
        self._writer.write(packet)
        self._last_tx = self._clock.ticks_ms()
        self._wake.set()

    def send(self, topic, payload, qos=0, retain=False, expiry_s=None):
        """Fire-and-forget publish (telemetry, acks, verify). False when the link is down."""
        if not self.connected:
            return False
        pid = self._pid() if qos else 0
        self._write(mqtt.publish(topic, payload, qos, retain, pid, expiry_s=expiry_s))
        return True

    def poke(self):
        """New records in the outbox: drain now rather than at the next tick."""
        self._wake.set()

    def stop(self):
        self._stop = True
        self._wake.set()

    # ---- the session ------------------------------------------------------------------------

    async def run(self):
        backoff = BACKOFF_MIN_S
        while not self._stop:
            try:
                await self._session()
                backoff = BACKOFF_MIN_S
            except Exception as err:  # noqa: BLE001 - every link fault means "reconnect later"
                self.failures += 1
                self._last_error = repr(err)
            self.connected = False
            self._close()
            if self._stop:
                break
            # Full jitter keeps a checkpoint's kiosks from reconnecting in lock-step.
            await asyncio.sleep(backoff * (0.5 + random.getrandbits(8) / 512))
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _close(self):
        writer = self._writer
        self._writer = None
        self._inflight = {}
        if writer is not None:
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def drop(self):
        """Close the socket without DISCONNECT (the broker will publish our LWT)."""
        if self._writer is not None:
            self._close()
            self._wake.set()

    async def disconnect(self):
        """Clean goodbye: say `offline` ourselves (the broker discards the LWT), stop reconnecting."""
        self._stop = True
        if self._writer is not None and self.connected:
            self._writer.write(mqtt.publish(self.will[0], self.will[1], 1, True, self._pid()))
            self._writer.write(mqtt.disconnect())
            try:
                await asyncio.wait_for(self._writer.drain(), 2)
            except Exception:  # noqa: BLE001
                pass
        self.connected = False
        self._close()
        self._wake.set()

    async def _session(self):
        reader, writer = await asyncio.wait_for(self._board.open_connection(self.host, self.port),
                                                CONNECT_TIMEOUT_S)
        self._writer = writer
        will = (self.will[0], self.will[1], 1, True)
        writer.write(mqtt.connect(self.client_id, self.keepalive_s, self._session_expiry_s,
                                  clean_start=True, will=will))
        await writer.drain()
        first, body = await asyncio.wait_for(mqtt.read_packet(reader), CONNECT_TIMEOUT_S)
        if first & 0xF0 != mqtt.CONNACK:
            raise mqtt.MQTTError("expected CONNACK")
        _, code, props = mqtt.parse_connack(body)
        if code:
            raise mqtt.MQTTError("connect refused", code)
        # The broker may shorten our keepalive (server keep alive property, spec 3.2.2.3.14).
        self.keepalive_s = props.get(mqtt.P_SERVER_KEEP_ALIVE, self.keepalive_s)
        now = self._clock.ticks_ms()
        self._last_rx = now
        self.connected = True
        self.sessions += 1
        self.connected_at = self._clock.ticks_ms()
        self._refused = False
        topic, payload = self._birth()
        self._write(mqtt.publish(topic, payload, 1, True, self._pid()))
        self._write(mqtt.subscribe(self._pid(), [(name, 1) for name in self._subscriptions]))
        reader_task = asyncio.create_task(self._read_loop(reader))
        try:
            while not self._stop and self._writer is writer:
                self._fill_inflight()
                self._keepalive()
                await writer.drain()
                if reader_task.done():
                    raise mqtt.MQTTError("reader stopped")
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 0.5)
                except asyncio.TimeoutError:
                    pass
            if self._writer is not writer:
                raise mqtt.MQTTError("link dropped")
        finally:
            reader_task.cancel()

    def _keepalive(self):
        now = self._clock.ticks_ms()
        period = self.keepalive_s * 1000
        if self._clock.ticks_diff(now, self._last_rx) > period * 3 // 2:
            raise mqtt.MQTTError("no answer from broker within 1.5x keepalive")
        if self._clock.ticks_diff(now, self._last_tx) >= period // 2:
            self._write(mqtt.PINGREQ_PACKET)

    def _fill_inflight(self):
        if self._refused or (self._hold is not None and self._hold()):
            return
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        busy = self._inflight.values()
        for rid, body in self._outbox.peek(MAX_INFLIGHT):
            if room <= 0:
                break
            if rid in busy:
                continue
            pid = self._pid()
            self._inflight[pid] = rid
            self._write(mqtt.publish(self._event_topic, self._encode(body), 1, False, pid))
            room -= 1

    async def _read_loop(self, reader):
        while True:
            first, body = await mqtt.read_packet(reader)
            self._last_rx = self._clock.ticks_ms()
            kind = first & 0xF0
            if kind == mqtt.PUBACK:
                self._handle_puback(*mqtt.parse_ack(body))
            elif kind == mqtt.PUBLISH:
                topic, payload, qos, retain, pid, _ = mqtt.parse_publish(first, body)
                if qos:
                    self._write(mqtt.puback(pid))
                try:
                    self._on_message(topic, payload, retain)
                except Exception as err:  # noqa: BLE001 - bad input never kills the link
                    self._on_fault("message on " + topic + " failed: " + repr(err))
            elif kind == mqtt.SUBACK:
                _, codes = mqtt.parse_suback(body)
                if any(c >= 0x80 for c in codes):
                    self._on_fault("subscription refused: " + str(list(codes)))
            elif kind == mqtt.DISCONNECT:
                raise mqtt.MQTTError("server disconnected us", body[0] if body else 0)

    def _handle_puback(self, pid, reason):
        rid = self._inflight.pop(pid, None)
        if rid is None:
            return  # ack for status/ack/verify: nothing durable to release
        if reason >= 0x80:
            if not self._refused:
                self._on_fault("broker refused event (reason " + str(reason) + ")")
            self._refused = True
            return
        self._outbox.ack(rid)
        self._wake.set()
