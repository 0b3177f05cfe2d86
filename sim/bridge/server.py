"""The bridge: one SimBoard's devices served to one real MicroPython kiosk process over a socket.

The firmware runs unmodified under the MicroPython unix port; its board (`sim/bridge/upy_board.py`)
turns every physical call into one request on a local TCP socket (127.0.0.1) or a Unix socket,
and this server performs it on the SimBoard: the register-level MLX90640 and SHT31 emulators on
the simulated I2C bus, the scanner UART, the recorded LED/buzzer/display outputs, the event
ledger and the watchdog. Everything else (clock, flash folder, the MQTT socket to the broker) is
the MicroPython process's own.

Wire protocol (all integers big-endian; one request, then exactly one response, strictly in turn):

    request   u32 n | u8 op     | n-1 bytes payload
    response  u32 n | u8 status | n-1 bytes payload
    status    0 = ok; 1..254 = errno (the client raises OSError(status); payload may carry text);
              255 = "none" (uart read with nothing waiting: MicroPython returns None)
    n         1 <= n <= MAX_FRAME (1 MiB); anything else drops the connection

    op    name        request payload                       ok response payload
    0x01  HELLO       kiosk name (utf-8)                    board profile (JSON)
    0x10  I2C_INIT    u32 freq | bus name                   u8 bus id   (errno 22 EINVAL: no such bus)
    0x11  I2C_XFER    u8 bus | u16 addr | u16 read_len | write bytes
                                                            read_len bytes, or errno as the device
                                                            NACKed: 19 ENODEV (absent/unplugged),
                                                            5 EIO (fault hook), as machine.I2C raises
    0x12  I2C_SCAN    u8 bus                                addresses, one byte each
    0x20  UART_OPEN   uart name                             u8 uart id  (errno 19: no such uart)
    0x21  UART_ANY    u8 uart                               u32 bytes waiting
    0x22  UART_READ   u8 uart | u32 n                       up to n bytes, or status 255 (None)
    0x23  UART_WRITE  u8 uart | bytes                       u32 written
    0x30  LED         u16 r | u16 g | u16 b                 -
    0x31  TONE        u32 freq_hz (0 = silent)              -
    0x32  SHOW        line1 utf-8 | 0x00 | line2 utf-8      -
    0x40  LEDGER      one event as JSON (utf-8)             -
    0x50  WDT_INIT    u32 timeout_ms                        -
    0x51  WDT_FEED    -                                     -
    0x52  RESET       -                                     -   (the process exits next; its
                                                                 supervisor boots it again)
    0x60  STATE       JSON {outbox, connected, frames, ui, mem_free, mem_alloc, last_error}
                                                            u8 control: 0 run, 1 stop | u32 drain_ms
    0x61  LOG         text (utf-8)                          -
    0x62  BYE         u8 exit code                          -   (a clean exit follows)

Robustness: the server runs in its own threads (one accepting, one per connection), so neither a
busy asyncio loop in the simulator nor a stuck kiosk blocks the other side. A connection may stay
idle forever (a SIGSTOPped process is a frozen board), but once a request has started it must be
complete within `request_timeout_s`, and a response must leave within the same bound, else the
connection is dropped; EOF (a killed process) ends it at once. Device access is serialised by a
lock; an unexpected exception in a handler answers EIO with the text and keeps serving.
"""
from __future__ import annotations

import errno
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HELLO = 0x01
I2C_INIT, I2C_XFER, I2C_SCAN = 0x10, 0x11, 0x12
UART_OPEN, UART_ANY, UART_READ, UART_WRITE = 0x20, 0x21, 0x22, 0x23
LED, TONE, SHOW = 0x30, 0x31, 0x32
LEDGER = 0x40
WDT_INIT, WDT_FEED, RESET = 0x50, 0x51, 0x52
STATE, LOG, BYE = 0x60, 0x61, 0x62

OK = 0
NONE = 255
MAX_FRAME = 1 << 20
RUN, STOP = 0, 1

log = logging.getLogger("sim.bridge")


class BridgeError(Exception):
    """A handler's answer with an errno (the client raises OSError(code))."""

    def __init__(self, code: int, text: str = "") -> None:
        super().__init__(code, text)
        self.code = code
        self.text = text


class _Dropped(Exception):
    pass


@dataclass
class BridgeStats:
    connections: int = 0
    requests: int = 0
    busy_s: float = 0.0          # time spent serving requests (device work included)
    per_op: dict[int, int] = field(default_factory=dict)
    dropped: int = 0             # connections dropped for a protocol violation or a timeout
    resets: int = 0              # RESET requests (board.reset() in the firmware)
    byes: int = 0                # clean exits announced
    logs: list[str] = field(default_factory=list)


class BridgeServer:
    """Serve `board` (a SimBoard) to one MicroPython kiosk at a time; start() then `address`."""

    def __init__(self, board: Any, *, host: str = "127.0.0.1", port: int = 0, unix_path: Path | None = None,
                 request_timeout_s: float = 5.0) -> None:
        self.board = board
        self.request_timeout_s = request_timeout_s
        self.stats = BridgeStats()
        self.kiosk: str | None = None
        self.state: dict[str, Any] = {}      # the kiosk's last STATE report
        self.state_at: float | None = None   # monotonic time of it
        self.ledger_times: list[float] = []  # monotonic arrival time of each ledger event
        self.exit_code: int | None = None    # from BYE
        self.on_reset: Callable[[], None] | None = None
        self._control = RUN
        self._drain_ms = 10_000
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._buses: list[Any] = []
        self._uarts: list[Any] = []
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._unix_path = unix_path
        if unix_path is not None:
            unix_path.unlink(missing_ok=True)
            self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._listener.bind(str(unix_path))
        else:
            self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._listener.bind((host, port))
        self._listener.listen(4)
        self._listener.settimeout(0.2)
        self._accepter: threading.Thread | None = None

    # ---- life cycle -----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """What the MicroPython board connects to: "host:port" or "unix:/path"."""
        if self._unix_path is not None:
            return "unix:" + str(self._unix_path)
        host, port = self._listener.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def client_connected(self) -> bool:
        return bool(self._conns)

    def start(self) -> BridgeServer:
        if self._accepter is None:
            self._accepter = threading.Thread(target=self._accept_loop, name="bridge-accept", daemon=True)
            self._accepter.start()
        return self

    def close(self, timeout_s: float = 2.0) -> None:
        """Stop serving: close the listener and every connection; bounded."""
        self._closing.set()
        for conn in list(self._conns):
            _shutdown(conn)
        if self._accepter is not None:
            self._accepter.join(timeout_s)
        for t in list(self._threads):
            t.join(timeout_s)
        self._listener.close()
        if self._unix_path is not None:
            self._unix_path.unlink(missing_ok=True)

    def request_stop(self, drain_s: float = 10.0) -> None:
        """Ask the kiosk for a clean stop (it learns it at its next STATE report, ~0.2 s)."""
        self._drain_ms = int(drain_s * 1000)
        self._control = STOP

    def reset_control(self) -> None:
        """A new boot of the kiosk runs again (after a stop request)."""
        self._control = RUN

    # ---- connections ----------------------------------------------------------------------

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if conn.family == socket.AF_INET:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(0.2)
            self.stats.connections += 1
            self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="bridge-conn", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._closing.is_set():
                try:
                    head = self._recv(conn, 5, idle_ok=True)
                except _Dropped as why:
                    if str(why) != "eof":
                        self.stats.dropped += 1
                        log.warning("bridge %s: dropped: %s", self.kiosk, why)
                    return
                if head is None:
                    continue
                n, op = struct.unpack(">IB", head)
                if not 1 <= n <= MAX_FRAME:
                    self.stats.dropped += 1
                    log.warning("bridge %s: bad frame length %d, dropping the connection", self.kiosk, n)
                    return
                try:
                    payload = self._recv(conn, n - 1, idle_ok=False) if n > 1 else b""
                except _Dropped as why:
                    self.stats.dropped += 1
                    log.warning("bridge %s: dropped mid-request: %s", self.kiosk, why)
                    return
                assert payload is not None
                t0 = time.perf_counter()
                status, body = self._dispatch(op, payload)
                self.stats.busy_s += time.perf_counter() - t0
                self.stats.requests += 1
                self.stats.per_op[op] = self.stats.per_op.get(op, 0) + 1
                try:
                    conn.settimeout(self.request_timeout_s)
                    conn.sendall(struct.pack(">IB", len(body) + 1, status) + body)
                    conn.settimeout(0.2)
                except OSError as err:
                    self.stats.dropped += 1
                    log.warning("bridge %s: cannot answer: %r", self.kiosk, err)
                    return
        finally:
            self._conns.discard(conn)
            _shutdown(conn)

    def _recv(self, conn: socket.socket, n: int, idle_ok: bool) -> bytes | None:
        """n bytes; None if idle_ok and nothing at all arrived within one 0.2 s tick."""
        buf = bytearray()
        deadline = time.monotonic() + self.request_timeout_s
        while len(buf) < n:
            if self._closing.is_set():
                raise _Dropped("server closing")
            try:
                chunk = conn.recv(n - len(buf))
            except TimeoutError:
                if idle_ok and not buf:
                    return None
                if time.monotonic() > deadline:
                    raise _Dropped(f"request incomplete after {self.request_timeout_s} s")
                continue
            except OSError as err:
                raise _Dropped(repr(err))
            if not chunk:
                raise _Dropped("eof" if not buf else "eof mid-frame")
            buf += chunk
        return bytes(buf)

    # ---- requests -------------------------------------------------------------------------

    def _dispatch(self, op: int, p: bytes) -> tuple[int, bytes]:
        try:
            with self._lock:
                return OK, self._handle(op, p)
        except BridgeError as err:
            return err.code, err.text.encode()
        except OSError as err:  # a device NACK, as machine.I2C raises it
            code = err.errno if isinstance(err.errno, int) and 0 < err.errno < 255 else errno.EIO
            return code, str(err).encode()
        except _NoneResult:
            return NONE, b""
        except Exception as err:
            log.exception("bridge %s: op 0x%02X failed", self.kiosk, op)
            return errno.EIO, repr(err).encode()[:200]

    def _handle(self, op: int, p: bytes) -> bytes:
        board = self.board
        if op == I2C_XFER:
            bus_id, addr, read_len = struct.unpack_from(">BHH", p)
            return bytes(self._bus(bus_id).transfer(addr, p[5:], read_len))
        if op == UART_ANY:
            return struct.pack(">I", self._uart(p[0]).any())
        if op == UART_READ:
            (n,) = struct.unpack_from(">I", p, 1)
            data = self._uart(p[0]).read(n)
            if data is None:
                raise _NoneResult()
            return bytes(data)
        if op == STATE:
            self.state = json.loads(p)
            self.state_at = time.monotonic()
            return struct.pack(">BI", self._control, self._drain_ms)
        if op == WDT_FEED:
            if board.watchdog is not None:
                board.watchdog.feed()
            return b""
        if op == LED:
            board.led(struct.unpack(">HHH", p))
            return b""
        if op == TONE:
            board.tone(struct.unpack(">I", p)[0])
            return b""
        if op == SHOW:
            line1, _, line2 = p.decode().partition("\x00")
            board.show(line1, line2)
            return b""
        if op == LEDGER:
            board.ledger.append(json.loads(p))
            self.ledger_times.append(time.monotonic())
            return b""
        if op == UART_WRITE:
            return struct.pack(">I", self._uart(p[0]).write(p[1:]))
        if op == I2C_INIT:
            (freq,) = struct.unpack_from(">I", p)
            name = p[4:].decode()
            try:
                bus = board.i2c(name, freq)
            except ValueError as err:
                raise BridgeError(errno.EINVAL, str(err))
            if bus not in self._buses:
                self._buses.append(bus)
            return bytes([self._buses.index(bus)])
        if op == I2C_SCAN:
            return bytes(self._bus(p[0]).scan())
        if op == UART_OPEN:
            try:
                uart = board.uart(p.decode())
            except KeyError:
                raise BridgeError(errno.ENODEV, "no UART " + p.decode())
            if uart not in self._uarts:
                self._uarts.append(uart)
            return bytes([self._uarts.index(uart)])
        if op == WDT_INIT:
            board.wdt(struct.unpack(">I", p)[0])
            return b""
        if op == HELLO:
            self.kiosk = p.decode()
            return json.dumps(board.profile).encode()
        if op == RESET:
            self.stats.resets += 1
            if self.on_reset is not None:
                self.on_reset()
            return b""
        if op == LOG:
            line = p.decode(errors="replace")
            self.stats.logs.append(line)
            del self.stats.logs[:-200]
            log.info("kiosk %s: %s", self.kiosk, line)
            return b""
        if op == BYE:
            self.stats.byes += 1
            self.exit_code = p[0] if p else 0
            return b""
        raise BridgeError(errno.EINVAL, f"unknown op 0x{op:02X}")

    def _bus(self, bus_id: int) -> Any:
        if bus_id >= len(self._buses):
            raise BridgeError(errno.EINVAL, f"bus {bus_id} not initialised")
        return self._buses[bus_id]

    def _uart(self, uart_id: int) -> Any:
        if uart_id >= len(self._uarts):
            raise BridgeError(errno.EINVAL, f"uart {uart_id} not opened")
        return self._uarts[uart_id]


class _NoneResult(Exception):
    pass


def _shutdown(conn: socket.socket) -> None:
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass
