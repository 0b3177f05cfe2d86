"""The bridge server stays up whatever the MicroPython side does: killed mid-run, stalled mid-request,
garbage; and a bridge round trip costs well under a millisecond."""
from __future__ import annotations

import errno
import json
import socket
import struct
import time
from pathlib import Path

import pytest

from sim.board.board import SimBoard
from sim.bridge import server as proto
from sim.bridge.kiosk_process import compile_firmware
from sim.bridge.server import BridgeServer
from sim.broker import Broker
from tests.bridge.rig import Rig
from tests.micropython_runner import run_micropython
from tests.services import wait_until

CONFIG = {"checkpoint": "cp-b", "kiosk": "k1", "lane": "L1", "dir": "in", "broker_host": "127.0.0.1",
          "broker_port": 9, "keepalive_s": 6, "warmup_ms": 500}


def _call(sock: socket.socket, op: int, payload: bytes = b"") -> tuple[int, bytes]:
    sock.sendall(struct.pack(">IB", len(payload) + 1, op) + payload)
    head = sock.recv(5, socket.MSG_WAITALL)
    n, status = struct.unpack(">IB", head)
    return status, sock.recv(n - 1, socket.MSG_WAITALL) if n > 1 else b""


def _connect(server: BridgeServer) -> socket.socket:
    host, port = server.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def test_killed_kiosk_does_not_hang_the_bridge(tmp_path: Path, broker: Broker) -> None:
    rig = Rig(tmp_path, broker.port).start()
    try:
        wait_until(lambda: rig.proc.state().get("frames", 0) > 2, 20, "the kiosk reads frames over the bridge")
        server = rig.proc.server
        rig.proc.kill()  # SIGKILL mid-run: no goodbye, possibly mid-request
        wait_until(lambda: not server.client_connected, 2, "the server notices the dead kiosk")
        assert server.exit_code is None, "no goodbye from a killed process"
        boots = rig.events("boot")
        rig.proc.start()  # the same server serves the next boot of the same board
        wait_until(lambda: len(rig.events("boot")) == len(boots) + 1, 10, "booted again")
        assert rig.events("boot")[-1]["boot"] == boots[-1]["boot"] + 1, "boot counter persisted on the flash folder"
        wait_until(lambda: rig.proc.state().get("frames", 0) > 0, 10, "frames again")
        assert server.stats.connections == 2
    finally:
        started = time.monotonic()
        rig.close()
        assert time.monotonic() - started < 5, "closing is bounded"


def test_stalled_garbage_and_unknown_requests(tmp_path: Path) -> None:
    board = SimBoard(tmp_path / "flash", CONFIG)
    server = BridgeServer(board, request_timeout_s=0.5).start()
    try:
        ok = _connect(server)
        assert json.loads(_call(ok, proto.HELLO, b"k1")[1])["name"] == board.profile["name"]
        # Half a request, then silence: the connection is dropped after request_timeout_s.
        stalled = _connect(server)
        stalled.sendall(struct.pack(">IB", 100, proto.LEDGER) + b"{")
        assert stalled.recv(1) == b"", "dropped"
        # A frame length out of bounds: dropped at once.
        bad = _connect(server)
        bad.sendall(struct.pack(">IB", proto.MAX_FRAME + 1, proto.LOG))
        assert bad.recv(1) == b""
        assert server.stats.dropped == 2
        # Errors are answers, not crashes; the first connection still works throughout.
        assert _call(ok, 0x7F)[0] == errno.EINVAL
        assert _call(ok, proto.I2C_XFER, struct.pack(">BHH", 3, 0x33, 2))[0] == errno.EINVAL  # no such bus
        assert _call(ok, proto.I2C_INIT, struct.pack(">I", 400_000) + b"nope")[0] == errno.EINVAL
        assert _call(ok, proto.LEDGER, b"not json")[0] == errno.EIO
        bus = _call(ok, proto.I2C_INIT, struct.pack(">I", 400_000) + b"sensor")[1][0]
        status, body = _call(ok, proto.I2C_XFER, struct.pack(">BHH", bus, 0x33, 2) + b"\x80\x0d")
        assert status == 0 and len(body) == 2  # the MLX90640 control register
        assert _call(ok, proto.I2C_XFER, struct.pack(">BHH", bus, 0x50, 1))[0] == errno.ENODEV  # nobody there
        uart = _call(ok, proto.UART_OPEN, b"scanner")[1][0]
        assert _call(ok, proto.UART_READ, bytes([uart]) + struct.pack(">I", 10))[0] == proto.NONE
        board.uart("scanner").inject(b"abc")
        assert _call(ok, proto.UART_READ, bytes([uart]) + struct.pack(">I", 10)) == (0, b"abc")
        assert _call(ok, proto.SHOW, "Pass 36.6 C\x00通过".encode())[0] == 0
        assert board.outputs.display[-1][1] == ("Pass 36.6 C", "通过")
        for conn in (ok, stalled, bad):
            conn.close()
    finally:
        started = time.monotonic()
        server.close()
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_round_trip_latency_from_micropython(tmp_path: Path, transport: str) -> None:
    board = SimBoard(tmp_path / "flash", CONFIG)
    server = BridgeServer(board, unix_path=tmp_path / "bridge.sock" if transport == "unix" else None).start()
    script = """
import time
from upy_board import BridgeBoard
board = BridgeBoard(ADDR, ROOT, "bench")
bus = board.i2c("sensor", 1000000)
uart = board.uart("scanner")
buf = bytearray(2)
ram = bytearray(1664)
def bench(fn, n):
    t0 = time.ticks_us()
    for _ in range(n):
        fn()
    return time.ticks_diff(time.ticks_us(), t0) / n
print("any", bench(uart.any, 2000))
print("status", bench(lambda: bus.readfrom_mem_into(0x33, 0x8000, buf, addrsize=16), 2000))
print("ram", bench(lambda: bus.readfrom_mem_into(0x33, 0x0400, ram, addrsize=16), 200))
board.bye()
""".replace("ADDR", repr(server.address)).replace("ROOT", repr(str(tmp_path / "flash")))
    try:
        out = run_micropython(script, extra_path=[compile_firmware()], timeout=60)
    finally:
        server.close()
    us = {k: float(v) for k, v in (line.split() for line in out.splitlines())}
    print(f"bridge round trip from MicroPython over {transport}: uart.any {us['any']:.0f} us, 2-byte register read "
          f"{us['status']:.0f} us, 1664-byte RAM read {us['ram']:.0f} us (emulator work included)")
    assert us["any"] < 1000 and us["status"] < 1000
