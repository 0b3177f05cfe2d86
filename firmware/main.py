# main.py - the only firmware file that touches `machine`: it builds the real Board from the
# board profile and starts the kiosk app. Everything else gets hardware through this object.
import asyncio
import gc
import json
import os
import time

import machine
import network

from kiosk.app import App

STABLE_AFTER_S = 60  # running this long clears boot.py's fast-reboot counter
FAST_BOOTS_FILE = "fastboots"  # written by boot.py
SAFE_AFTER = 3


class Clock:
    def __init__(self):
        self.synced = False

    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, a, b):
        return time.ticks_add(a, b)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def set_time_ms(self, utc_ms):
        """Set the RTC from NTP's peer, the gateway (its live summary carries UTC ms)."""
        secs = utc_ms // 1000 - (946684800 if time.gmtime(0)[0] == 2000 else 0)
        y, mo, d, h, mi, s, wd, _ = time.gmtime(secs)
        machine.RTC().datetime((y, mo, d, wd, h, mi, s, (utc_ms % 1000) * 1000))
        self.synced = True

    def time_ms(self):
        # The RTC starts at 2000-01-01 until NTP or the gateway sets it; before that there is no
        # wall clock, and events carry ts null rather than a made-up time.
        if not self.synced:
            return None
        return (time.time() + 946684800) * 1000 if time.gmtime(0)[0] == 2000 else time.time() * 1000


class FlashFS:
    def open(self, name, mode="r"):
        return open(name, mode)

    def rename(self, old, new):
        os.rename(old, new)

    def remove(self, name):
        os.remove(name)

    def listdir(self, name=""):
        return sorted(os.listdir(name or "/"))

    def mkdir(self, name):
        os.mkdir(name)

    def statvfs(self, name="/"):
        return os.statvfs(name)


class Board:
    def __init__(self, profile):
        self.profile = profile
        self.clock = Clock()
        self.fs = FlashFS()
        self._i2c = {}
        self._uart = {}
        parts = profile["parts"]
        ring = parts["led_ring"]
        try:
            import neopixel

            self._ring = neopixel.NeoPixel(machine.Pin(ring["pin"], machine.Pin.OUT), ring["count"])
        except ImportError:
            self._ring = None
        self._buzzer = machine.PWM(machine.Pin(parts["buzzer"]["pin"]), freq=2000, duty_u16=0)
        self._display = None
        self._wlan = network.WLAN(network.STA_IF)

    def i2c(self, name, freq):
        bus = self._i2c.get(name)
        spec = self.profile["i2c"][name]
        if bus is None:
            bus = machine.I2C(spec["id"], scl=machine.Pin(spec["scl"]), sda=machine.Pin(spec["sda"]), freq=freq)
            self._i2c[name] = bus
        else:
            bus.init(scl=machine.Pin(spec["scl"]), sda=machine.Pin(spec["sda"]), freq=freq)
        return bus

    def uart(self, name):
        port = self._uart.get(name)
        if port is None:
            spec = self.profile["uart"][name]
            port = machine.UART(spec["id"], baudrate=spec["baud"], tx=spec["tx"], rx=spec["rx"],
                                rxbuf=4096, timeout=0)
            self._uart[name] = port
        return port

    async def open_connection(self, host, port):
        if not self._wlan.isconnected():
            raise OSError(113, "Wi-Fi not connected")
        return await asyncio.open_connection(host, port)

    def wdt(self, timeout_ms):
        return machine.WDT(timeout=timeout_ms)

    def led(self, rgb):
        if self._ring is not None:
            self._ring.fill(rgb)
            self._ring.write()

    def tone(self, freq_hz):
        if freq_hz:
            self._buzzer.freq(freq_hz)
            self._buzzer.duty_u16(32768)
        else:
            self._buzzer.duty_u16(0)

    def show(self, line1, line2):
        display = self._display_driver()
        if display is None:
            print("kiosk:", line1)  # no display fitted: the serial console shows the state
            return
        display.fill(0)
        display.text(line1[:16], 0, 0)
        display.text(line2[:16], 0, 16)  # the built-in 8x8 font has no CJK glyphs; ASCII line 1 leads
        display.show()

    def _display_driver(self):
        if self._display is None:
            try:
                import ssd1306  # micropython-lib; installed with `mip install ssd1306` at flash time

                spec = self.profile["parts"]["display"]
                self._display = ssd1306.SSD1306_I2C(spec["width"], spec["height"], self.i2c(spec["bus"], 400000),
                                                    addr=spec["address"])
            except (ImportError, OSError):
                self._display = False
        return self._display or None

    def free_mem(self):
        gc.collect()
        return gc.mem_free()

    def rssi(self):
        try:
            return self._wlan.status("rssi") if self._wlan.isconnected() else None
        except (OSError, ValueError):
            return None

    def reset(self):
        machine.reset()


def connect_wifi(board, cfg):
    board._wlan.active(True)
    if cfg.get("wifi_ssid"):
        board._wlan.connect(cfg["wifi_ssid"], cfg.get("wifi_password", ""))


async def keep_wifi(board, cfg):
    """Rejoin the access point whenever the link drops (the MQTT link then reconnects by itself),
    backing off from 2 s to 60 s so a dead access point is not hammered."""
    wait = 2
    while True:
        await asyncio.sleep(wait)
        if board._wlan.isconnected() or not cfg.get("wifi_ssid"):
            wait = 2
            continue
        try:
            board._wlan.disconnect()
            board._wlan.connect(cfg["wifi_ssid"], cfg.get("wifi_password", ""))
        except OSError:
            pass
        wait = min(wait * 2, 60)


def safe_mode():
    try:
        with open(FAST_BOOTS_FILE) as f:
            return int(f.read() or "0") > SAFE_AFTER
    except (OSError, ValueError):
        return False


async def sync_clock(board, host):
    """NTP once Wi-Fi is up; without it the kiosk runs unsynced (events carry ts null)."""
    import ntptime

    if host:
        ntptime.host = host
    for _ in range(30):
        try:
            ntptime.settime()
            board.clock.synced = True
            return
        except (OSError, OverflowError):
            await asyncio.sleep(10)


async def clear_fast_boots():
    await asyncio.sleep(STABLE_AFTER_S)
    try:
        os.remove(FAST_BOOTS_FILE)
    except OSError:
        pass


async def run(board, app):
    asyncio.create_task(clear_fast_boots())
    asyncio.create_task(keep_wifi(board, app.cfg))
    if app.cfg.get("ntp_host"):
        asyncio.create_task(sync_clock(board, app.cfg["ntp_host"]))
    await app.run()


def main():
    with open("board.json") as f:  # the board profile, copied next to the firmware when flashing
        profile = json.load(f)
    board = Board(profile)
    app = App(board)
    connect_wifi(board, app.cfg)
    if safe_mode():
        print("kiosk: safe mode: REPL only; fix the cause, then remove 'fastboots' and reset")
        return
    asyncio.run(run(board, app))


main()
