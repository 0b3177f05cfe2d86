"""A board for the real MicroPython unix port (runs under `micropython`, not CPython).

It gives App(board) the same things an ESP32 board does: ticks clock, a folder as the flash
filesystem, asyncio TCP streams, a scanner UART fed from a script, and a thermal sensor that
plays a scripted scene (an empty lane, then one warm face) as whole frames.
"""

import asyncio
import os
import time


class Clock:
    def ticks_ms(self):
        return time.ticks_ms()

    def ticks_diff(self, a, b):
        return time.ticks_diff(a, b)

    def ticks_add(self, a, b):
        return time.ticks_add(a, b)

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


class SceneSensor:
    """Frames of background_c; from frame `person_from` a face whose hot spot is `face_c`."""

    def __init__(self, background_c, face_c, person_from):
        self.background_c = background_c
        self.face_c = face_c
        self.person_from = person_from
        self.frames = 0
        self.ta = 31.0

    def read(self, frame, pixels=None):
        self.frames += 1
        for i in range(768):
            frame[i] = self.background_c
        if self.frames >= self.person_from:
            for r in range(8, 12):
                for c in range(14, 18):
                    frame[r * 32 + c] = self.face_c


class UnixBoard:
    def __init__(self, fs_root, profile_name, sensor):
        self.profile = {"name": profile_name}
        self.clock = Clock()
        self.fs = FolderFS(fs_root)
        self.sensor = sensor
        self.scanner = ScriptedUART()
        self.ledger = []

    def thermal_sensor(self):
        return self.sensor

    def uart(self, name):
        return self.scanner

    async def open_connection(self, host, port):
        return await asyncio.open_connection(host, port)
