"""The scanner on a real pseudo-terminal in raw mode: no byte is rewritten in either direction,
and the firmware's Scanner reads codes from it through pyserial like from a USB scanner."""
from __future__ import annotations

import os
import random
import time

import serial

from kiosk import scanner
from sim.devices.scanner_pty import PtyScanner, SerialUART

ALL_BYTES = bytes(range(256))


def _read_exactly(port: serial.Serial, n: int, timeout: float = 5.0) -> bytes:
    out = bytearray()
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += port.read(n - len(out))
    return bytes(out)


def test_raw_before_any_host_opens_it() -> None:
    # tty.setraw alone (no pyserial yet): CR stays CR, ^C/^D/^S pass, nothing is echoed back
    with PtyScanner() as dev:
        fd = os.open(dev.path, os.O_RDWR | os.O_NOCTTY)
        try:
            dev.write(ALL_BYTES)
            got = bytearray()
            while len(got) < 256:
                got += os.read(fd, 256)
            assert bytes(got) == ALL_BYTES
            assert dev.host_bytes(timeout=0.05) == b""  # no echo
            os.write(fd, ALL_BYTES)
            assert dev.host_bytes(timeout=1.0, limit=256) == ALL_BYTES
        finally:
            os.close(fd)


def test_binary_round_trip_through_pyserial_both_directions() -> None:
    payload = ALL_BYTES * 8 + ALL_BYTES[::-1] * 8  # 4 KiB, every value, both orders
    with PtyScanner(baud=115200) as dev, serial.Serial(dev.path, 115200, timeout=0.2) as port:
        dev.write(payload)
        assert _read_exactly(port, len(payload)) == payload          # device -> host
        port.write(payload)
        port.flush()
        back = bytearray()
        deadline = time.monotonic() + 5
        while len(back) < len(payload) and time.monotonic() < deadline:
            back += dev.host_bytes(timeout=0.1, limit=len(payload) - len(back))
        assert bytes(back) == payload                                 # host -> device
        assert dev.host_bytes(timeout=0.05) == b""                   # and no echo either way
        assert port.read(1) == b""


def test_paced_typing_follows_the_baud_rate() -> None:
    with PtyScanner(baud=9600) as dev, serial.Serial(dev.path, 9600, timeout=0.05) as port:
        t0 = time.monotonic()
        dev.send_code("X" * 94)  # 96 bytes at 960 bytes/s: ~100 ms on the wire
        elapsed = time.monotonic() - t0
        assert 0.09 <= elapsed < 1.0
        assert _read_exactly(port, 96) == b"X" * 94 + b"\r\n"


class _Board:
    """The one call of App(board) that matters here: board.uart(name)."""

    def __init__(self, uart: SerialUART) -> None:
        self.uarts = {"scanner": uart}

    def uart(self, name: str) -> SerialUART:
        return self.uarts[name]


def test_firmware_scanner_reads_the_pty_through_pyserial() -> None:
    rng = random.Random(5)
    codes = ["11010519491231002X", "SP1.not-really-a-pass", "\u7ca4B12345", "https://x.example/p?q=1"]
    with PtyScanner(baud=115200) as dev:
        board = _Board(dev.open_uart())
        uart = board.uart("scanner")
        s = scanner.Scanner(idle_ms=300)
        got: list[str] = []
        t0 = time.monotonic()

        def poll(ms: int = 20) -> None:
            # what the app's scanner task does: read what is there, pass the board's ms clock
            deadline = time.monotonic() + ms / 1000
            while True:
                n = uart.any()
                if n:
                    got.extend(s.feed(uart.read(n), int((time.monotonic() - t0) * 1000)))
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.002)

        dev.send_garbage(300, rng)                 # power-up noise / wrong baud
        dev.write(b"\r\n")
        poll()
        got.clear()                                # whatever the noise framed is not under test
        for code, term in zip(codes, [b"\r", b"\n", b"\r\n", b"\r\n"]):
            dev.send_code(code, term)
            poll()
        dev.send_code(b"AB\x00CD")                 # NUL: rejected
        dev.send_code(b"\xff\xfe")                 # not UTF-8: rejected
        dev.send_partial("11010519491231002X", 9)  # broken frame, then silence
        poll(600)
        dev.send_code(codes[0])                    # after the window: accepted again
        dev.send_code(codes[0])                    # at once: a repeat
        for _ in range(17):                        # 68 KiB without a newline, as it comes
            dev.write(b"Z" * 4096)
            poll(5)
        dev.write(b"\n")
        poll(50)
        dev.send_code("LAST")
        poll()
        uart.deinit()
    assert got == codes + [codes[0], "LAST"]
    assert s.counts["control"] >= 1 and s.counts["not_utf8"] >= 1
    assert s.counts["partial"] == 1 and s.counts["repeat"] == 1 and s.counts["overlong"] == 1
