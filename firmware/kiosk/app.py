"""App(board): the kiosk, wired together. Everything physical comes from `board`.

The board gives:
  profile          hardware/boards/<name>.json as a dict (pins, buses, parts)
  clock            ticks_ms(), ticks_diff(a, b), time_ms() -> UTC ms, or None before sync
  fs               open/rename/remove/listdir on the flash filesystem
  i2c(name, freq)  the named I2C bus (machine.I2C API), set to `freq`
  uart(name)       the named UART (any(), read(n), write())
  open_connection(host, port) -> asyncio streams
  led(rgb), tone(freq_hz), show(line1, line2)   the traveller-facing outputs
optional:
  thermal_sensor() a ready sensor with poll(frame)/ta/vdd (the simulator's frame-level fast path);
                   without it the app drives the MLX90640 on the "sensor" bus itself
  wdt(timeout_ms)  a watchdog with feed(); free_mem(); rssi()
  ledger           a list: the simulator's record of every event this kiosk created
"""

import asyncio
from array import array

from kiosk import commands, config, link, nvstate, outbox, protocol, scanner, screening, thermal, ui
from kiosk.mlx90640 import MLX90640
from kiosk.sht31 import SHT31

FW_VERSION = "0.2.0"
FRAME_PIXELS = 768
SKIN_EMISSIVITY = 0.98  # human skin (Steketee 1973); the scene model assumes the same
AIR_PERIOD_S = 10
SENSOR_RETRY_S = 5
WATCHDOG_MS = 8000
STALL_MS = 5000  # a task that has not looped for this long is stuck: stop feeding the watchdog
STALL_FRAMES = 4  # no full frame for this many frame periods: the sensor has stopped measuring
RECOVERED_FRAMES = 8  # good frames in a row before a sensor fault is reported cleared
CLOCK_HOLD_MS = 15000  # unsynced: hold events this long after connecting (gateway summary every 10 s)


class Uptime:
    """Milliseconds since boot from the wrapping ticks counter (ESP32 ticks wrap every ~12 days)."""

    def __init__(self, clock):
        self._clock = clock
        self._last = clock.ticks_ms()
        self._ms = 0

    def ms(self):
        now = self._clock.ticks_ms()
        self._ms += self._clock.ticks_diff(now, self._last)
        self._last = now
        return self._ms


class App:
    def __init__(self, board):
        self.board = board
        self.clock = board.clock
        self.uptime = Uptime(board.clock)
        self.config = config.Store(board.fs)
        self.cfg, self._config_problem = self.config.load()
        self.commands = commands.Commands(board.fs)
        self.state = nvstate.NVState(board.fs).load()
        self.outbox = outbox.Outbox(board.fs)  # recovers the queue left on flash
        self.state.resume(self.outbox.last_seq)
        self.checkpoint = self.cfg["checkpoint"]
        self.kiosk = self.cfg["kiosk"]
        part = board.profile.get("parts", {}).get("thermal", {})
        self.analyzer = thermal.Analyzer(fov_deg=part.get("fov_deg", 55), warmup_ms=self.cfg["warmup_ms"],
                                         stable_frames=self.cfg["stable_frames"],
                                         stable_spread_c=self.cfg["stable_spread_c"])
        self.screener = screening.Screener(self._screening_settings())
        self.ui = ui.UI(board)
        self.frame = array("f", [0.0] * FRAME_PIXELS)
        self.sensor = None
        self.air = None
        self.air_c = None
        self.uart = board.uart("scanner")
        self.scanner = scanner.Scanner(repeat_ms=self.cfg["scanner_repeat_ms"], ticks_diff=board.clock.ticks_diff)
        self.frames = 0
        self.last_error = None
        self.rejected_messages = 0
        self._faulted = {}  # part -> True while its fault is open: one fault event per outage
        self._verifies = {}  # request id -> (uptime at scan, code kind); raw codes never kept
        self._verify_n = 0
        self._alive = {}  # task name -> uptime of its last loop, for the watchdog
        self.clock_source = "rtc" if board.clock.time_ms() is not None else None
        self._summary_topic = protocol.gateway_topic(self.checkpoint, protocol.SUMMARY)
        self._stopping = False
        self._tasks = []
        self.link = link.Link(
            board, self.cfg["broker_host"], self.cfg["broker_port"],
            client_id=self.checkpoint + "-" + self.kiosk, keepalive_s=self.cfg["keepalive_s"],
            will=(self._topic(protocol.STATUS), b""),  # set in run(), once the boot count is known
            subscriptions=[self._topic(c) for c in protocol.TO_KIOSK] + [self._summary_topic],
            outbox=self.outbox, event_topic=self._topic(protocol.EVENT), birth=self._birth,
            on_message=self._on_message, on_fault=self._link_fault, encode=self._encode_event,
            hold=self._hold_for_clock)

    @property
    def config_hash(self):
        return self.config.hash

    def _screening_settings(self):
        return {k: self.cfg[k] for k in screening.DEFAULTS}

    def _topic(self, channel):
        return protocol.topic(self.checkpoint, self.kiosk, channel)

    def _birth(self):
        body = protocol.status_online(FW_VERSION, self.board.profile["name"], self.state.boot,
                                      self.state.epoch, self.config_hash, self.clock.time_ms())
        return self._topic(protocol.STATUS), protocol.encode(body)

    # ---- events and faults ------------------------------------------------------------------

    def emit(self, etype, fields, at_ms=None):
        """Create one event (at uptime `at_ms`, default now): numbered, in the ledger, queued."""
        now = self.uptime.ms()
        at = now if at_ms is None else at_ms
        wall = self.clock.time_ms()
        ts = None if wall is None else wall - (now - at)
        body = protocol.event(self.state.epoch, self.state.take_seq(), self.state.boot, ts, at,
                              self.cfg["lane"], self.cfg["dir"], etype, self.config_hash, fields)
        ledger = getattr(self.board, "ledger", None)
        if ledger is not None:
            ledger.append(body)
        if not self.outbox.append(body):
            self.ui.set("records full")
        self.link.poke()
        return body

    def fault(self, part, detail):
        """Report a fault once per outage of `part`; `clear(part)` re-arms it."""
        self.last_error = part + ": " + detail
        if self._faulted.get(part):
            return None
        self._faulted[part] = True
        return self.emit(protocol.FAULT, {"part": part, "detail": detail[:200]})

    def clear(self, part):
        if self._faulted.pop(part, None):
            self.emit(protocol.FAULT, {"part": part, "detail": "recovered", "cleared": True})

    def _link_fault(self, detail):
        self.fault("link", detail)

    # ---- messages from the gateway ----------------------------------------------------------

    # ---- time -------------------------------------------------------------------------------

    def _hold_for_clock(self):
        """Before the clock is synced, hold events back for a short while after connecting: the
        gateway's next summary sets the clock and they leave with a real `ts`."""
        if self.clock.time_ms() is not None:
            return False
        return self.clock.ticks_diff(self.clock.ticks_ms(), self.link.connected_at) < CLOCK_HOLD_MS

    def _encode_event(self, body):
        """An event's JSON at send time; `ts` filled in if the clock synced later in the same boot."""
        wall = self.clock.time_ms()
        if body["ts"] is None and wall is not None and body["boot"] == self.state.boot:
            body = dict(body)
            body["ts"] = wall - (self.uptime.ms() - body["uptime_ms"])
        return protocol.encode(body)

    def _on_summary(self, body, retained):
        # A retained summary may be minutes old; only a live one is fresh enough to set the clock.
        if retained or self.clock.time_ms() is not None:
            return
        set_time = getattr(self.clock, "set_time_ms", None)
        if set_time is not None:
            set_time(body["ts"])
            self.clock_source = "gateway"

    def _on_message(self, topic_name, payload, retained=False):
        try:
            if protocol.parse_topic(topic_name)[2] == protocol.CMD:
                # The command journal validates by itself, so even an unknown verb gets its refusal.
                self._on_command(payload)
                return
            _, _, channel, body = protocol.parse_message(topic_name, payload)
        except protocol.ProtocolError as err:
            self.rejected_messages += 1
            self.last_error = "message: " + str(err)
            return
        if channel == protocol.SUMMARY:
            self._on_summary(body, retained)
        elif channel == protocol.VERDICT:
            self._on_verdict(body)
        elif channel == protocol.CONFIG:
            self._on_config(body["settings"])

    def _on_config(self, settings):
        """The gateway's desired settings: applied all or nothing, or rejected with reasons."""
        old = self.config.hash
        cfg, errors = self.config.apply_remote(settings)
        if errors:
            self.emit(protocol.FAULT, {"part": "config", "detail": "rejected: " + "; ".join(errors)[:180]})
            return
        self.cfg = cfg
        self.screener.cfg = screening.settings(self._screening_settings())
        if self.config.hash != old:
            topic, payload = self._birth()  # the applied hash, for the gateway's fleet view
            self.link.send(topic, payload, 1, retain=True)

    def _on_command(self, payload):
        ack, action = self.commands.handle(payload, self.clock.time_ms())
        if ack is not None:
            self.link.send(self._topic(protocol.ACK), protocol.encode(ack), 1)
        if action is None:
            return
        if action.name == "reboot":  # ack_first: the ack above leaves before we reset
            asyncio.create_task(self._reboot())
            return
        ok, detail = self._perform(action)
        done = self.commands.finish(action, ok, detail)
        self.link.send(self._topic(protocol.ACK), protocol.encode(done), 1)

    def _perform(self, action):
        if action.name == "selftest":
            parts = [("sensor", self.sensor is not None), ("air", self.air_c is not None),
                     ("link", self.link.connected), ("flash", self.outbox.refused == 0)]
            bad = [name for name, ok in parts if not ok]
            return not bad, "ok" if not bad else "failing: " + ",".join(bad)
        return False, action.name + " not available in firmware " + FW_VERSION

    async def _reboot(self):
        # The ack is on its way; give it a moment to leave, then reset (the id is journalled,
        # so a redelivered reboot is acked again and not acted on).
        await asyncio.sleep(0.5)
        await self.link.disconnect()
        reset = getattr(self.board, "reset", None)
        if reset is not None:
            reset()

    def _on_verdict(self, body):
        pending = self._verifies.pop(body["id"], None)
        if pending is None:
            return  # too late: the code was already recorded as "none"
        at, kind = pending
        colour = body["color"] if body["valid"] else ("red" if body["color"] == "red" else "none")
        self.screener.code(protocol.code_info(kind, colour, body["holder_ref"]), at)
        if colour != "green":
            self.ui.set("manual check")

    # ---- tasks ------------------------------------------------------------------------------

    async def run(self):
        """Boot, then run until stop()."""
        self.state.count_boot()
        self.link.will = (self._topic(protocol.STATUS),
                          protocol.encode(protocol.status_offline(self.state.epoch, self.state.boot)))
        self.emit(protocol.BOOT, {"fw": FW_VERSION, "board": self.board.profile["name"]})
        if self._config_problem:
            self.fault("config", self._config_problem)
        if self.commands.problem:
            self.fault("flash", "command journal: " + self.commands.problem)
        self.ui.set("warming up")
        self._tasks = [asyncio.create_task(t) for t in (
            self.link.run(), self._sensor_task(), self._air_task(), self._scanner_task(),
            self._heartbeat_task())]
        try:
            await asyncio.gather(*self._tasks)
        except asyncio.CancelledError:
            pass

    async def stop(self, drain_s=10.0):
        """Let the outbox drain (bounded), say goodbye cleanly, stop every task."""
        self._stopping = True
        for rec in self.screener.records(self.uptime.ms() + 10 ** 9):  # flush pending records
            self._record(rec)
        waited = 0.0
        while self.outbox.depth() and self.link.connected and waited < drain_s:
            await asyncio.sleep(0.05)
            waited += 0.05
        await self.link.disconnect()
        for task in self._tasks:
            task.cancel()

    def _open_sensor(self):
        fast = getattr(self.board, "thermal_sensor", None)
        if fast is not None:
            return fast()
        bus_cfg = self.board.profile["i2c"]["sensor"]
        # The EEPROM may be read at 400 kHz at most (datasheet 8.1); frames go faster.
        bus = self.board.i2c("sensor", bus_cfg.get("eeprom_hz", 400000))
        sensor = MLX90640(bus, refresh_hz=2 * self.cfg["frame_hz"], emissivity=SKIN_EMISSIVITY,
                          sleep_ms=self.board.clock.sleep_ms)
        sensor.begin()
        self.board.i2c("sensor", bus_cfg.get("frame_hz", 400000))
        return sensor

    async def _sensor_task(self):
        period = 1.0 / (2 * self.cfg["frame_hz"])  # one subpage
        last_frame = self.uptime.ms()
        good_frames = 0
        while not self._stopping:
            self._alive["sensor"] = self.uptime.ms()
            if self.sensor is None:
                try:
                    self.sensor = self._open_sensor()
                    last_frame = self.uptime.ms()
                except Exception as err:  # noqa: BLE001 - a dead sensor degrades, never stops, the kiosk
                    self.fault("sensor", "cannot start: " + repr(err))
                    self.ui.set("manual screening")
                    await asyncio.sleep(SENSOR_RETRY_S)
                    continue
            try:
                ready = self.sensor.poll(self.frame)
                now = self.uptime.ms()
                if ready:
                    last_frame = now
                elif now - last_frame > STALL_FRAMES * 2000 * period:
                    raise OSError("no new frame for %d ms (data-ready stuck?)" % (now - last_frame))
            except Exception as err:  # noqa: BLE001
                self.fault("sensor", repr(err))
                self.ui.set("manual screening")
                self.sensor = None
                good_frames = 0
                continue
            if ready:
                good_frames += 1
                if good_frames == RECOVERED_FRAMES:
                    self.clear("sensor")
                self._on_frame()
            # Poll at twice the subpage rate: a frame is never late by more than half a subpage.
            await asyncio.sleep(period / 2)

    def _on_frame(self):
        now = self.uptime.ms()
        self.frames += 1
        if self.air_c is not None and hasattr(self.sensor, "reflected_c"):
            self.sensor.reflected_c = self.air_c  # surroundings are at air temperature
        rd = self.analyzer.update(self.frame, self.air_c, self.sensor.ta, now)
        result = self.screener.frame(rd, now)
        if result is not None:
            last = self.screener.last
            self.ui.set(result, last["core_c"] if last else None)
        elif self.air_c is None or rd.reason in ("nan", "range", "flat", "size"):
            self.ui.set("manual screening")
        elif rd.reason == "warming":
            self.ui.set("warming up")
        elif self.screener.state == screening.IDLE:
            self.ui.set("ready" if self.link.connected else "offline")
        elif self.screener.state == screening.MEASURING:
            self.ui.set("measuring")
        for rec in self.screener.records(now):
            self._record(rec)

    def _record(self, rec):
        if rec["type"] == "scan":
            self.emit(protocol.SCAN, {"code": rec["code"]}, rec["t_ms"])
            return
        fields = {"result": rec["result"], "temp_c": rec["core_c"], "skin_c": rec["skin_c"],
                  "ambient_c": rec["ambient_c"], "distance_cm": rec["distance_cm"], "code": rec["code"],
                  "paired": rec["paired"]}
        for key in ("measured", "in_range", "uncertainty_c", "people"):
            fields[key] = rec[key]
        self.emit(protocol.SCREENING, fields, rec["t_ms"])

    async def _air_task(self):
        while not self._stopping:
            self._alive["air"] = self.uptime.ms()
            try:
                if self.air is None:
                    self.air = SHT31(self.board.i2c("sensor", 400000), sleep_ms=self.board.clock.sleep_ms)
                self.air.start()
                await asyncio.sleep(0.02)  # single-shot, high repeatability: 15.5 ms (SHT3x table 4)
                self.air_c, _ = self.air.fetch()
                self.clear("air")
            except Exception as err:  # noqa: BLE001 - no ambient: no decisions, never a made-up value
                self.air_c = None
                self.air = None
                self.fault("air", repr(err))
            await asyncio.sleep(AIR_PERIOD_S)

    async def _scanner_task(self):
        while not self._stopping:
            self._alive["scanner"] = self.uptime.ms()
            n = self.uart.any()
            if n:
                for text in self.scanner.feed(self.uart.read(n), self.clock.ticks_ms()):
                    self._on_code(text)
            self._expire_verifies()
            await asyncio.sleep(0.02)

    def _on_code(self, text):
        """A scanned code: ask the gateway for a verdict; the raw text goes nowhere else."""
        kind = scanner.code_kind(text)
        now = self.uptime.ms()
        self._verify_n += 1
        req_id = "%d-%d" % (self.state.boot, self._verify_n)
        sent = self.link.send(self._topic(protocol.VERIFY), protocol.encode(protocol.verify(req_id, kind, text)),
                              1, expiry_s=protocol.VERIFY_EXPIRY_S)
        if sent:
            self._verifies[req_id] = (now, kind)
        else:
            self.screener.code(protocol.code_info(kind, "none", None), now)
            self.ui.set("manual check")

    def _expire_verifies(self):
        now = self.uptime.ms()
        for req_id in list(self._verifies):
            at, kind = self._verifies[req_id]
            if now - at > self.cfg["verdict_timeout_ms"]:
                del self._verifies[req_id]
                self.screener.code(protocol.code_info(kind, "none", None), at)
                self.ui.set("manual check")

    async def _heartbeat_task(self):
        wdt_factory = getattr(self.board, "wdt", None)
        wdt = wdt_factory(WATCHDOG_MS) if wdt_factory is not None else None
        last_telemetry = -10 ** 9
        last_frames = 0
        while not self._stopping:
            now = self.uptime.ms()
            # Feed the watchdog only while every task keeps looping: a stuck task means a reset.
            if wdt is not None and all(now - t < STALL_MS for t in self._alive.values()):
                wdt.feed()
            if now - last_telemetry >= self.cfg["telemetry_s"] * 1000:
                fps = (self.frames - last_frames) * 1000 / max(1, now - last_telemetry)
                last_frames = self.frames
                last_telemetry = now
                self._send_telemetry(now, fps)
            await asyncio.sleep(1)

    def _send_telemetry(self, now, fps):
        board = self.board
        values = {"outbox": self.outbox.depth(), "fps": round(fps, 2), "air_c": self.air_c,
                  "last_error": self.last_error}
        if self.sensor is not None:
            values["ta"] = getattr(self.sensor, "ta", None)
            values["vdd"] = getattr(self.sensor, "vdd", None)
        for name in ("free_mem", "rssi"):
            fn = getattr(board, name, None)
            if fn is not None:
                values[name] = fn()
        body = protocol.telemetry(now, self.clock.time_ms(), **values)
        self.link.send(self._topic(protocol.TELEMETRY), protocol.encode(body), 0)
