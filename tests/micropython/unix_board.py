"""A board for the real MicroPython unix port (runs under `micropython`, not CPython).

It gives App(board) the same things an ESP32 board does: ticks clock, a folder as the flash
filesystem, asyncio TCP streams, a scanner UART fed from a script, and a thermal sensor that
plays a scripted scene (an empty lane, then one warm face) as whole frames.
"""

import asyncio
import os
import time

from kiosk.sht31 import crc8


class Clock:
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, a, b):
        return time.ticks_add(a, b)

    def sleep_ms(self, ms):
        time.sleep_ms(ms)

    def time_ms(self):
        return int(time.time() * 1000)


class FolderFS:
    def __init__(self, root):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:
            pass

    def open(self, name, mode="r"):
        return open(self.root + "/" + name, mode)

    def rename(self, old, new):
        os.rename(self.root + "/" + old, self.root + "/" + new)

    def remove(self, name):
        os.remove(self.root + "/" + name)

    def listdir(self, name=""):
        return sorted(os.listdir(self.root + "/" + name))


class ScriptedUART:
    def __init__(self):
        self.rx = b""

    def any(self):
        return len(self.rx)

    def read(self, n):
        data, self.rx = self.rx[:n], self.rx[n:]
        return data


class AirBus:
    """An I2C bus with one SHT31 at a fixed air temperature (single-shot measurements)."""

    def __init__(self, temp_c):
        raw_t = int((temp_c + 45) / 175 * 65535)
        raw_rh = int(0.45 * 65535)
        out = bytearray(6)
        out[0], out[1], out[3], out[4] = raw_t >> 8, raw_t & 255, raw_rh >> 8, raw_rh & 255
        out[2] = crc8(out, 0, 2)
        out[5] = crc8(out, 3, 5)
        self._result = bytes(out)

    def writeto(self, addr, buf, stop=True):
        if addr != 0x44:
            raise OSError(19)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        if addr != 0x44:
            raise OSError(19)
        buf[:] = self._result[:len(buf)]


class SceneSensor:
    """Plays whole frames: the `empty` ones cyclically for `empty_polls` polls, then `person` ones."""

    def __init__(self, empty, person, empty_polls):
        self.empty = empty
        self.person = person
        self.empty_polls = empty_polls
        self.frames = 0
        self.ta = 31.0
        self.vdd = 3.3

    def poll(self, frame, pixels=None):
        n = self.frames
        self.frames += 1
        if n < self.empty_polls:
            src = self.empty[n % len(self.empty)]
        else:
            src = self.person[n % len(self.person)]
        for i in range(768):
            frame[i] = src[i]
        return True


class UnixBoard:
    def __init__(self, fs_root, profile_name, sensor, air_c):
        self.profile = {"name": profile_name, "i2c": {"sensor": {"eeprom_hz": 400000, "frame_hz": 1000000}}}
        self.air_bus = AirBus(air_c)
        self.shown = []
        self.clock = Clock()
        self.fs = FolderFS(fs_root)
        self.sensor = sensor
        self.scanner = ScriptedUART()
        self.ledger = []

    def thermal_sensor(self):
        return self.sensor

    def uart(self, name):
        return self.scanner

    def i2c(self, name, freq):
        return self.air_bus

    def led(self, rgb):
        pass

    def tone(self, freq_hz):
        pass

    def show(self, line1, line2):
        self.shown.append(line1)

    async def open_connection(self, host, port):
        return await asyncio.open_connection(host, port)
