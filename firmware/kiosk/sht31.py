"""SHT31 air temperature / humidity sensor: the kiosk's real ambient (DESIGN section 5).

Runs under MicroPython 1.29 and CPython. References are to the Sensirion SHT3x-DIS datasheet
(version 6, 2019): single shot, high repeatability, no clock stretching = command 0x2400
(table 9); it takes at most 15.5 ms (table 4); the result is 6 bytes: T msb, T lsb, CRC,
RH msb, RH lsb, CRC; CRC-8 polynomial 0x31, init 0xFF (section 4.12); T = -45 + 175 S/65535,
RH = 100 S/65535 (section 4.13). While measuring, the sensor NACKs a read header.

Failure contract: bus errors, a sensor still busy after the retries, and CRC mismatches raise
SensorError (an OSError); no value is ever guessed.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

try:
    from time import sleep_ms as _board_sleep_ms
except ImportError:  # CPython
    from time import sleep as _sleep

    def _board_sleep_ms(ms):
        _sleep(ms / 1000)

from .mlx90640 import SensorError

_SINGLE_SHOT_HIGH = const(0x2400)
_MEASURE_MS = const(16)       # table 4: 15.5 ms max at high repeatability
_RETRY_MS = const(5)
_RETRIES = const(3)


def crc8(buf, start, end):
    """Sensirion CRC-8 (poly 0x31, init 0xFF, no reflection) over buf[start:end]."""
    crc = 0xFF
    for i in range(start, end):
        crc ^= buf[i]
        for _ in range(8):
            crc = ((crc << 1) ^ 0x31) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


class SHT31:
    def __init__(self, i2c, address=0x44, sleep_ms=None):
        self._i2c = i2c
        self._addr = address
        self._sleep_ms = sleep_ms or _board_sleep_ms
        self._cmd = bytearray(2)
        self._buf = bytearray(6)

    def start(self):
        """Start one single-shot measurement (non-blocking; fetch() >= 16 ms later)."""
        self._cmd[0] = _SINGLE_SHOT_HIGH >> 8
        self._cmd[1] = _SINGLE_SHOT_HIGH & 0xFF
        try:
            self._i2c.writeto(self._addr, self._cmd)
        except OSError as e:
            raise SensorError("SHT31 at 0x%02X: I2C error starting a measurement: %r" % (self._addr, e))

    def fetch(self):
        """Read the finished measurement: (temp_c, rh). OSError while still measuring."""
        self._i2c.readfrom_into(self._addr, self._buf)
        b = self._buf
        if crc8(b, 0, 2) != b[2] or crc8(b, 3, 5) != b[5]:
            raise SensorError("SHT31 at 0x%02X: CRC mismatch in %s" % (self._addr, bytes(b)))
        t = -45 + 175 * ((b[0] << 8) | b[1]) / 65535
        rh = 100 * ((b[3] << 8) | b[4]) / 65535
        return t, rh

    def read(self):
        """Measure once and return (temp_c, rh); raises SensorError."""
        self.start()
        self._sleep_ms(_MEASURE_MS)
        err = None
        for _ in range(_RETRIES):
            try:
                return self.fetch()
            except SensorError:
                raise
            except OSError as e:     # NACK: still measuring, or gone
                err = e
                self._sleep_ms(_RETRY_MS)
        raise SensorError("SHT31 at 0x%02X: no result after %d ms: %r"
                          % (self._addr, _MEASURE_MS + _RETRIES * _RETRY_MS, err))
