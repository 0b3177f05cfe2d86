"""App(board): the kiosk, wired together. Everything physical comes from `board`.

The board gives: `profile` (hardware/boards/<name>.json), `clock` (ticks_ms, ticks_diff,
time_ms -> UTC ms or None before sync), `fs` (open/rename/remove/listdir on the flash
filesystem), `thermal_sensor()` (an object with `read(frame)` and `ta`), `uart(name)`,
`open_connection(host, port)` (asyncio streams), and optionally `ledger` (a list the simulator
uses as ground truth of every event this kiosk created).
"""

import asyncio
from array import array

from kiosk import config, link, nvstate, outbox, protocol, scanner

FW_VERSION = "0.1.0"
FRAME_PIXELS = 768
# Foundation screening (replaced by thermal.py/screening.py from the thermal chain issue):
PERSON_SKIN_C = 30.0  # a blob this warm is a face
STABLE_FRAMES = 3
STABLE_SPREAD_C = 0.4
SKIN_TO_CORE_C = 1.6  # constant offset: placeholder until the calibrated model lands


class App:
    def __init__(self, board):
        self.board = board
        self.clock = board.clock
        self.cfg = config.load(board.fs)
        self.config_hash = config.screening_hash(self.cfg)
        self.state = nvstate.NVState(board.fs).load()
        self.outbox = outbox.Outbox()
        self.checkpoint = self.cfg["checkpoint"]
        self.kiosk = self.cfg["kiosk"]
        self.frame = array("f", [0.0] * FRAME_PIXELS)
        self.sensor = board.thermal_sensor()
        self.uart = board.uart("scanner")
        self.scanner = scanner.Scanner()
        self.ui_state = "warming up"
        self.rejected_messages = 0
        self._pending_code = None  # (ticks, code info) waiting for a temperature
        self._stopping = False
        self._tasks = []
        self.link = link.Link(
            board, self.cfg["broker_host"], self.cfg["broker_port"],
            client_id=self.checkpoint + "-" + self.kiosk, keepalive_s=self.cfg["keepalive_s"],
            will=(self._topic(protocol.STATUS), b""),  # filled in at boot, when the boot count is known
            subscriptions=[self._topic(c) for c in protocol.TO_KIOSK], outbox=self.outbox,
            event_topic=self._topic(protocol.EVENT), birth=self._birth,
            on_message=self._on_message, on_fault=self._link_fault)

    def _topic(self, channel):
        return protocol.topic(self.checkpoint, self.kiosk, channel)

    def _birth(self):
        body = protocol.status_online(FW_VERSION, self.board.profile["name"], self.state.boot,
                                      self.state.epoch, self.config_hash, self.clock.time_ms())
        return self._topic(protocol.STATUS), protocol.encode(body)

    # ---- events -----------------------------------------------------------------------------

    def emit(self, etype, fields):
        """Create one event: numbered, recorded in the ledger, queued for the link."""
        body = protocol.event(self.state.epoch, self.state.take_seq(), self.state.boot,
                              self.clock.time_ms(), self.clock.ticks_ms(), self.cfg["lane"],
                              self.cfg["dir"], etype, self.config_hash, fields)
        ledger = getattr(self.board, "ledger", None)
        if ledger is not None:
            ledger.append(body)
        if not self.outbox.append(body):
            self.ui_state = "records full"
        self.link.poke()
        return body

    def fault(self, part, detail):
        return self.emit(protocol.FAULT, {"part": part, "detail": detail[:200]})

    def _link_fault(self, detail):
        self.fault("link", detail)

    def _on_message(self, topic_name, payload):
        try:
            _, _, channel, body = protocol.parse_message(topic_name, payload)
        except protocol.ProtocolError as err:
            self.rejected_messages += 1
            self.last_error = str(err)
            return
        if channel == protocol.CMD:
            # Commands arrive with the firmware runtime issue; say so rather than pretend.
            self.link.send(self._topic(protocol.ACK), protocol.encode(
                protocol.ack(body["id"], False, "command not supported by firmware " + FW_VERSION)), 1)

    # ---- tasks ------------------------------------------------------------------------------

    async def run(self):
        """Boot, then run until stop()."""
        self.state.count_boot()
        self.link.will = (self._topic(protocol.STATUS),
                           protocol.encode(protocol.status_offline(self.state.epoch, self.state.boot)))
        self.emit(protocol.BOOT, {"fw": FW_VERSION, "board": self.board.profile["name"]})
        self._tasks = [asyncio.create_task(t) for t in (
            self.link.run(), self._sensor_loop(), self._scanner_loop(), self._telemetry_loop())]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            pass

    async def stop(self, drain_s=10.0):
        """Let the outbox drain (bounded), say goodbye cleanly, stop every task."""
        self._stopping = True
        waited = 0.0
        while self.outbox.depth() and self.link.connected and waited < drain_s:
            await asyncio.sleep(0.05)
            waited += 0.05
        await self.link.disconnect()
        for task in self._tasks:
            task.cancel()

    async def _sensor_loop(self):
        period = 1.0 / self.cfg["frame_hz"]
        readings = []
        failed = False
        while not self._stopping:
            try:
                self.sensor.read(self.frame)
            except Exception as err:  # noqa: BLE001 - a sensor fault degrades, never stops, the kiosk
                if not failed:
                    self.fault("sensor", repr(err))
                    self.ui_state = "manual screening"
                failed = True
                await asyncio.sleep(1.0)
                continue
            failed = False
            readings = self._screen(readings)
            await asyncio.sleep(period)

    def _screen(self, readings):
        """Foundation screening: hot spot of the frame, a decision once STABLE_FRAMES agree."""
        ordered = sorted(self.frame)
        hot = sum(ordered[-4:]) / 4
        if hot < PERSON_SKIN_C:
            self.ui_state = "ready"
            return []
        if readings is None:  # decided for this person; wait until they leave
            return None
        readings.append(hot)
        if len(readings) < STABLE_FRAMES:
            self.ui_state = "measuring"
            return readings
        window = readings[-STABLE_FRAMES:]
        if max(window) - min(window) > STABLE_SPREAD_C:
            return readings[-STABLE_FRAMES:]
        skin = sum(window) / STABLE_FRAMES
        temp = skin + SKIN_TO_CORE_C
        result = "fever" if temp >= self.cfg["fever_c"] else "pass"
        code = self._take_code()
        self.emit(protocol.SCREENING, {
            "result": result, "temp_c": round(temp, 2), "skin_c": round(skin, 2),
            "ambient_c": round(ordered[FRAME_PIXELS // 2], 2), "distance_cm": None,
            "code": code, "paired": code is not None})
        self.ui_state = result
        return None

    def _take_code(self):
        pending = self._pending_code
        self._pending_code = None
        if pending and self.clock.ticks_diff(self.clock.ticks_ms(), pending[0]) <= self.cfg["pair_window_ms"]:
            return pending[1]
        if pending:
            self.emit(protocol.SCAN, {"code": pending[1], "reason": "no temperature in window"})
        return None

    async def _scanner_loop(self):
        while not self._stopping:
            n = self.uart.any()
            if n:
                for text in self.scanner.feed(self.uart.read(n)):
                    # The raw code stays in RAM; events carry only its kind until verify lands.
                    code = protocol.code_info(scanner.code_kind(text), "none", None)
                    if self._pending_code:
                        self.emit(protocol.SCAN, {"code": self._pending_code[1], "reason": "superseded"})
                    self._pending_code = (self.clock.ticks_ms(), code)
            await asyncio.sleep(0.02)

    async def _telemetry_loop(self):
        while not self._stopping:
            await asyncio.sleep(self.cfg["telemetry_s"])
            body = protocol.telemetry(self.clock.ticks_ms(), self.clock.time_ms(),
                                      outbox=self.outbox.depth(), ta=getattr(self.sensor, "ta", None))
            self.link.send(self._topic(protocol.TELEMETRY), protocol.encode(body), 0)
