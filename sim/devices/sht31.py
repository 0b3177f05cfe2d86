"""SHT31 air temperature / humidity emulator (I2C 0x44), Zephyr emulator shape.

Command set (Sensirion SHT3x-DIS datasheet v6, table 9 ff.): single shot with/without clock
stretching at high/medium/low repeatability, periodic modes with fetch 0xE000, break,
soft reset 0x30A2, heater on/off, read/clear status. Results are 6 bytes with CRC-8 (poly
0x31, init 0xFF). Reads while measuring (or with nothing to fetch) NACK the address.

Backend in real units: `temp_c`, `rh` (plus per-unit `bias_c`/`bias_rh` within the
datasheet's +-0.2 degC / +-2 %RH). Timing: "poll" - results ready at once; "timed" -
after the datasheet's maximum duration on `clock()`.
Faults: `fault_hook` / `unplugged` (I2CEmulator), `crc_fault` (CRC bytes corrupted),
`stuck_busy` (a measurement never completes).
"""
from __future__ import annotations

import errno
import time
from typing import Callable, Optional

from kiosk.sht31 import crc8
from sim.board.i2c import I2CEmulator, Transaction

# command -> measurement duration (s), table 4 maxima; True = clock stretching
_SINGLE = {0x2400: 0.0155, 0x240B: 0.0065, 0x2416: 0.0045, 0x2C06: 0.0155, 0x2C0D: 0.0065, 0x2C10: 0.0045}
_STRETCH = {0x2C06, 0x2C0D, 0x2C10}
_PERIODIC_MSB = {0x20, 0x21, 0x22, 0x23, 0x27}
_FETCH, _BREAK, _RESET, _STATUS, _CLEAR = 0xE000, 0x3093, 0x30A2, 0xF32D, 0x3041
_HEATER_ON, _HEATER_OFF = 0x306D, 0x3066


def encode(temp_c: float, rh: float) -> bytes:
    """The 6 result bytes for a temperature and humidity (inverse of section 4.13)."""
    st = min(65535, max(0, round((temp_c + 45) / 175 * 65535)))
    srh = min(65535, max(0, round(rh / 100 * 65535)))
    out = bytearray(6)
    out[0:2] = st.to_bytes(2, "big")
    out[3:5] = srh.to_bytes(2, "big")
    out[2] = crc8(out, 0, 2)
    out[5] = crc8(out, 3, 5)
    return bytes(out)


class SHT31Emulator(I2CEmulator):
    def __init__(self, *, address: int = 0x44, mode: str = "poll", clock: Optional[Callable[[], float]] = None,
                 temp_c: float = 22.0, rh: float = 45.0) -> None:
        super().__init__(address)
        if mode not in ("poll", "timed"):
            raise ValueError("mode is 'poll' or 'timed'")
        self.mode = mode
        self.clock = clock or time.monotonic
        self.temp_c = temp_c
        self.rh = rh
        self.bias_c = 0.0
        self.bias_rh = 0.0
        self.crc_fault = False
        self.stuck_busy = False
        self.heater = False
        self.status = 0x8010          # alert pending, reset detected (table 17 defaults)
        self.periodic = False
        self._result: Optional[bytes] = None
        self._ready_at = 0.0
        self.commands: list[int] = []

    def _measure(self, duration: float) -> None:
        self._result = encode(self.temp_c + self.bias_c, self.rh + self.bias_rh)
        self._ready_at = self.clock() + (duration if self.mode == "timed" else 0.0)

    def handle(self, t: Transaction) -> bytes:
        if t.write:
            if len(t.write) != 2:
                raise OSError(errno.EIO, "SHT31 commands are 16 bits")
            self._command(int.from_bytes(t.write, "big"))
        if not t.read_len:
            return b""
        return self._read(t.read_len)

    def _command(self, cmd: int) -> None:
        self.commands.append(cmd)
        if cmd in _SINGLE:
            self.periodic = False
            self._measure(_SINGLE[cmd])
        elif cmd >> 8 in _PERIODIC_MSB:
            self.periodic = True
            self._measure(0.0155)
        elif cmd == _FETCH:
            if not self.periodic:
                raise OSError(errno.EIO, "fetch without periodic mode")
            self._measure(0.0)
        elif cmd in (_BREAK, _RESET):
            self.periodic = False
            self._result = None
            if cmd == _RESET:
                self.heater = False
                self.status = 0x8010
        elif cmd == _STATUS:
            word = (self.status | (0x2000 if self.heater else 0)).to_bytes(2, "big")
            self._result = word + bytes([crc8(word, 0, 2)])
            self._ready_at = 0.0
        elif cmd == _CLEAR:
            self.status &= ~0x8C13 & 0xFFFF
        elif cmd in (_HEATER_ON, _HEATER_OFF):
            self.heater = cmd == _HEATER_ON
        else:
            self.status |= 0x0002      # command status: last command not processed
            raise OSError(errno.EIO, f"unknown SHT31 command 0x{cmd:04X}")

    def _read(self, n: int) -> bytes:
        if self._result is None or self.stuck_busy:
            raise OSError(errno.ENODEV, "SHT31 busy / no data (address NACK)")
        if self.clock() < self._ready_at and self.commands[-1] not in _STRETCH:
            raise OSError(errno.ENODEV, "SHT31 still measuring (address NACK)")
        data = bytearray(self._result[:n].ljust(n, b"\xff"))
        if self.crc_fault and len(data) >= 3:
            data[2] ^= 0x5A
        if not self.periodic:
            self._result = None
        return bytes(data)
