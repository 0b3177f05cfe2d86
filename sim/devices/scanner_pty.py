"""A QR/barcode scanner module on a real pseudo-terminal in raw mode.

The simulator holds the pty master and "types" into it the way a UART scanner module (GM65,
GM861, ...) does: a code followed by CR, LF or CRLF, at the byte rate its baud rate allows, and -
when a scenario asks for faults - garbage, NULs, invalid UTF-8 and frames cut short. Anything that
talks to a USB scanner (pyserial, a kiosk process, `tools`) opens the slave by its path, e.g.
`/dev/pts/7`.

Raw mode matters: a pty starts in canonical "cooked" mode, where the line discipline turns CR into
LF (ICRNL), LF into CRLF on output (ONLCR), echoes input back, and treats ^C, ^D, ^S, ^Z as
signals and flow control. Any of those would silently rewrite scanner bytes, so both the slave's
termios are made raw here (tty.setraw) before anyone opens it; pyserial re-applies raw settings
when it opens the port. tests/firmware_runtime/test_scanner_pty.py proves the round trip with all
256 byte values in both directions.

    dev = PtyScanner(baud=9600)          # dev.path: the slave's path
    dev.send_code("SP1....", "\r\n")     # paced at baud/10 bytes per second unless pace=False
    dev.send_garbage(100, rng); dev.send_partial("11010519...", 7)
    dev.host_bytes(timeout=0.1)          # what the host wrote to the scanner (config commands)
    uart = dev.open_uart()               # a machine.UART-like object on the slave, via pyserial
    dev.close()

SerialUART gives the firmware MicroPython's machine.UART read API (any, read, readinto, write)
over any pyserial port, so `board.uarts["scanner"] = dev.open_uart()` plugs a pty into a SimBoard.
"""
from __future__ import annotations

import os
import random
import select
import time
import tty
from typing import Any, Callable

import serial

TERMINATORS = (b"\r", b"\n", b"\r\n")
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop


class PtyScanner:
    def __init__(self, baud: int = 9600, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.baud = baud
        self._sleep = sleep
        self.master, self._slave = os.openpty()
        # Raw before anyone else opens it; the slave fd stays open here so the pty never hangs
        # up (reads on the master would then fail with EIO) while the host reopens the port.
        tty.setraw(self._slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)
        self.sent = bytearray()  # ground truth: every byte typed into the pty
        self.closed = False

    # ---- device -> host ---------------------------------------------------------------------
    def write(self, data: bytes, timeout: float = 5.0) -> None:
        """Put bytes on the wire (the pty master); waits while the host's buffer is full."""
        view = memoryview(bytes(data))
        deadline = time.monotonic() + timeout
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                n = 0
            if n:
                self.sent += view[:n]
                view = view[n:]
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"pty {self.path}: host is not reading ({len(view)} bytes left)")
            select.select([], [self.master], [], min(left, 0.05))

    def type(self, data: bytes, pace: bool = True, chunk: int = 16) -> None:
        """Write at the UART's byte rate (baud / 10 bytes per second), `chunk` bytes at a time."""
        if not pace:
            self.write(data)
            return
        for i in range(0, len(data), chunk):
            part = data[i:i + chunk]
            self.write(part)
            self._sleep(len(part) * BITS_PER_BYTE / self.baud)

    def send_code(self, code: str | bytes, terminator: bytes = b"\r\n", pace: bool = True) -> None:
        raw = code.encode() if isinstance(code, str) else bytes(code)
        self.type(raw + terminator, pace)

    def send_garbage(self, n: int, rng: random.Random, pace: bool = False) -> bytes:
        """n random bytes (line noise, a wrong baud rate): may contain terminators, NUL, anything."""
        junk = rng.randbytes(n)
        self.type(junk, pace)
        return junk

    def send_partial(self, code: str | bytes, cut: int, pace: bool = False) -> None:
        """The first `cut` bytes of a code and no terminator: a frame broken off mid-way."""
        raw = code.encode() if isinstance(code, str) else bytes(code)
        self.type(raw[:cut], pace)

    # ---- host -> device ---------------------------------------------------------------------
    def host_bytes(self, timeout: float = 0.0, limit: int = 65536) -> bytes:
        """Bytes the host wrote to the scanner (e.g. a GM65 configuration command)."""
        out = bytearray()
        deadline = time.monotonic() + timeout
        while len(out) < limit:
            left = max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                break
            try:
                data = os.read(self.master, limit - len(out))
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            out += data
        return bytes(out)

    def open_uart(self, timeout: float = 0.0) -> SerialUART:
        return SerialUART(serial.Serial(self.path, self.baud, timeout=timeout))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.master)
            os.close(self._slave)

    def __enter__(self) -> PtyScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialUART:
    """MicroPython's machine.UART read/write API over a pyserial port (any serial device)."""

    def __init__(self, port: Any) -> None:
        self.port = port

    def any(self) -> int:
        return int(self.port.in_waiting)

    def read(self, n: int | None = None) -> bytes | None:
        avail = self.port.in_waiting
        if not avail:
            return None  # machine.UART.read returns None when nothing came before its timeout
        data: bytes = self.port.read(avail if n is None else min(n, avail))
        return data or None

    def readinto(self, buf: bytearray | memoryview, nbytes: int | None = None) -> int | None:
        data = self.read(len(buf) if nbytes is None else min(nbytes, len(buf)))
        if not data:
            return None
        buf[:len(data)] = data
        return len(data)

    def write(self, data: bytes) -> int:
        n: int = self.port.write(data)
        self.port.flush()
        return n

    def deinit(self) -> None:
        self.port.close()
