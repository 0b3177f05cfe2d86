"""BridgeBoard: the kiosk board for a real MicroPython process (runs under `micropython`, not CPython).

The unmodified App(board) gets from it what an ESP32 board gives, with the physical parts reached
over the bridge socket (protocol: sim/bridge/server.py): I2C buses with the machine.I2C API (a NACK
raises OSError(errno) as on the chip), the scanner UART, the LED/buzzer/display, the ledger and
the watchdog. The clock is MicroPython's own `time` (ticks_ms ...), the flash filesystem a host
folder, and open_connection real asyncio sockets to the real broker. There is deliberately no
`thermal_sensor`: the App drives its own MLX90640 driver over the bridged bus.

Bridge calls are blocking socket round trips (~0.1 ms on loopback). If the bridge goes away (the
simulator died), the board raises SystemExit: a kiosk without its hardware has nothing to do.
"""

import asyncio
import gc
import json
import os
import socket
import struct
import sys
import time

HELLO = 0x01
I2C_INIT = 0x10
I2C_XFER = 0x11
I2C_SCAN = 0x12
UART_OPEN = 0x20
UART_ANY = 0x21
UART_READ = 0x22
UART_WRITE = 0x23
LED = 0x30
TONE = 0x31
SHOW = 0x32
LEDGER = 0x40
WDT_INIT = 0x50
WDT_FEED = 0x51
RESET = 0x52
STATE = 0x60
LOG = 0x61
BYE = 0x62
NONE = 255
EXIT_RESET = 75  # the process exit code that means "board.reset()": the supervisor boots it again


class BridgeLost(Exception):
    pass


class Bridge:
    """One socket to the bridge server; call(op, payload) -> (status, payload), strictly in turn."""

    def __init__(self, address, timeout_s=5):
        if address.startswith("unix:"):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            # The unix port takes a raw sockaddr: struct sockaddr_un (native u16 family, path, NUL).
            self.sock.connect(struct.pack("H", socket.AF_UNIX) + address[5:].encode() + b"\0")
        else:
            host, port = address.rsplit(":", 1)
            self.sock = socket.socket()
            self.sock.connect(socket.getaddrinfo(host, int(port))[0][-1])
            try:
                self.sock.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY (no constants on unix port)
            except OSError:
                pass
        self.sock.settimeout(timeout_s)
        self.calls = 0

    def _recv(self, n):
        buf = bytearray(n)
        mv = memoryview(buf)
        got = 0
        while got < n:
            k = self.sock.readinto(mv[got:])
            if not k:
                raise BridgeLost("bridge closed")
            got += k
        return buf

    def call(self, op, payload=b""):
        try:
            self.sock.write(struct.pack(">IB", len(payload) + 1, op) + payload)
            n, status = struct.unpack(">IB", self._recv(5))
            body = self._recv(n - 1) if n > 1 else b""
        except (OSError, BridgeLost) as err:
            print("bridge lost:", repr(err))
            raise SystemExit(3)
        self.calls += 1
        return status, body

    def ok(self, op, payload=b""):
        """call() and raise OSError(errno) on an error status."""
        status, body = self.call(op, payload)
        if status and status != NONE:
            raise OSError(status)
        return body

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class BridgeI2C:
    """machine.I2C over the bridge: every call is one wire transaction on the simulated bus."""

    def __init__(self, bridge, bus_id):
        self._b = bridge
        self._id = bus_id

    def init(self, freq=None, **kw):
        pass  # the frequency is set by board.i2c(name, freq)

    def _xfer(self, addr, write, read_len):
        status, body = self._b.call(I2C_XFER, struct.pack(">BHH", self._id, addr, read_len) + write)
        if status:
            raise OSError(status)
        return body

    @staticmethod
    def _mem(memaddr, addrsize):
        if addrsize == 16:
            return bytes((memaddr >> 8 & 0xFF, memaddr & 0xFF))
        if addrsize == 8:
            return bytes((memaddr & 0xFF,))
        raise ValueError("addrsize must be 8 or 16")

    def scan(self):
        return list(self._b.ok(I2C_SCAN, bytes((self._id,))))

    def readfrom(self, addr, nbytes, stop=True):
        return bytes(self._xfer(addr, b"", nbytes))

    def readfrom_into(self, addr, buf, stop=True):
        buf[:] = self._xfer(addr, b"", len(buf))

    def writeto(self, addr, buf, stop=True):
        self._xfer(addr, bytes(buf), 0)
        return len(buf)

    def writevto(self, addr, vector, stop=True):
        data = b"".join(bytes(v) for v in vector)
        self._xfer(addr, data, 0)
        return len(data)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        return bytes(self._xfer(addr, self._mem(memaddr, addrsize), nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        buf[:] = self._xfer(addr, self._mem(memaddr, addrsize), len(buf))

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._xfer(addr, self._mem(memaddr, addrsize) + bytes(buf), 0)


class BridgeUART:
    """machine.UART's any()/read(n)/write() over the bridge."""

    def __init__(self, bridge, uart_id):
        self._b = bridge
        self._id = bytes((uart_id,))

    def any(self):
        return struct.unpack(">I", self._b.ok(UART_ANY, self._id))[0]

    def read(self, n=None):
        status, body = self._b.call(UART_READ, self._id + struct.pack(">I", 0xFFFFFFFF if n is None else n))
        if status == NONE:
            return None
        if status:
            raise OSError(status)
        return bytes(body)

    def write(self, data):
        return struct.unpack(">I", self._b.ok(UART_WRITE, self._id + bytes(data)))[0]


class BridgeWDT:
    def __init__(self, bridge, timeout_ms):
        self._b = bridge
        bridge.ok(WDT_INIT, struct.pack(">I", timeout_ms))

    def feed(self):
        self._b.ok(WDT_FEED)


class BridgeLedger:
    """The board's `ledger`: App.emit() appends each event; the simulator keeps it."""

    def __init__(self, bridge):
        self._b = bridge
        self.count = 0

    def append(self, event):
        self._b.ok(LEDGER, json.dumps(event).encode())
        self.count += 1


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
        return time.time_ns() // 1000000


class FolderFS:
    """A host folder as the board's flash root (the same folder the simulator wrote config.json to)."""

    def __init__(self, root):
        self.root = root.rstrip("/")
        try:
            os.mkdir(self.root)
        except OSError:
            pass

    def _path(self, name):
        name = name.lstrip("/")
        if ".." in name.split("/"):
            raise OSError(2)
        return self.root + "/" + name if name else self.root

    def open(self, name, mode="r"):
        return open(self._path(name), mode)

    def rename(self, old, new):
        os.rename(self._path(old), self._path(new))

    def remove(self, name):
        os.remove(self._path(name))

    def listdir(self, name=""):
        return sorted(os.listdir(self._path(name)))

    def mkdir(self, name):
        os.mkdir(self._path(name))


class BridgeBoard:
    def __init__(self, address, fs_root, kiosk="kiosk"):
        self.bridge = Bridge(address)
        self.profile = json.loads(self.bridge.ok(HELLO, kiosk.encode()))
        self.clock = Clock()
        self.fs = FolderFS(fs_root)
        self.ledger = BridgeLedger(self.bridge)
        self._buses = {}
        self._uarts = {}

    def i2c(self, name, freq):
        bus_id = self.bridge.ok(I2C_INIT, struct.pack(">I", freq) + name.encode())[0]
        bus = self._buses.get(bus_id)
        if bus is None:
            bus = self._buses[bus_id] = BridgeI2C(self.bridge, bus_id)
        return bus

    def uart(self, name):
        uart = self._uarts.get(name)
        if uart is None:
            uart = self._uarts[name] = BridgeUART(self.bridge, self.bridge.ok(UART_OPEN, name.encode())[0])
        return uart

    async def open_connection(self, host, port):
        return await asyncio.open_connection(host, port)

    def led(self, rgb):
        self.bridge.ok(LED, struct.pack(">HHH", rgb[0], rgb[1], rgb[2]))

    def tone(self, freq_hz):
        self.bridge.ok(TONE, struct.pack(">I", freq_hz))

    def show(self, line1, line2):
        self.bridge.ok(SHOW, line1.encode() + b"\x00" + line2.encode())

    def wdt(self, timeout_ms):
        return BridgeWDT(self.bridge, timeout_ms)

    def free_mem(self):
        return gc.mem_free()

    def rssi(self):
        return -58

    def reset(self):
        """machine.reset(): tell the simulator, then end this process (it is booted again)."""
        self.bridge.ok(RESET)
        self.bridge.close()
        sys.exit(EXIT_RESET)

    # ---- for the entry script (not part of the board API the App uses) -------------------

    def report(self, state):
        """Send the kiosk's state; returns (control, drain_s): control 1 asks for a clean stop."""
        state["mem_free"] = gc.mem_free()
        state["mem_alloc"] = gc.mem_alloc()
        control, drain_ms = struct.unpack(">BI", self.bridge.ok(STATE, json.dumps(state).encode()))
        return control, drain_ms / 1000

    def log(self, text):
        self.bridge.ok(LOG, text.encode())

    def bye(self, code=0):
        self.bridge.ok(BYE, bytes((code,)))
        self.bridge.close()
