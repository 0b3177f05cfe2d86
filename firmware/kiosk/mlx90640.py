"""MLX90640 32x24 thermal array: calibration from EEPROM, subpage reads, object temperature.

Runs unchanged under MicroPython 1.29 (the kiosk) and CPython (simulator, tests).
Section numbers in comments refer to the Melexis MLX90640 datasheet, Rev 12 (3901090640).

Failure contract: every bus error, data-ready timeout, impossible EEPROM content, impossible
Ta/Vdd or frozen frame raises SensorError (an OSError); the driver never reports a made-up
temperature. A pixel whose equations have no real solution is NaN.

Layout: frame index = row * 32 + col, row 0 = RAM row 0 (0x0400), 24 rows x 32 cols.
The bus is passed in (MicroPython machine.I2C API); the caller sets its speed (EEPROM reads
at <= 400 kHz, datasheet section 8 note 5). The EEPROM is only ever read.
"""

from array import array

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


ROWS = const(24)
COLS = const(32)
PIXELS = const(768)
EE_ADDR = const(0x2400)
EE_WORDS = const(832)
RAM_ADDR = const(0x0400)
RAM_WORDS = const(832)
STATUS_REG = const(0x8000)
CONTROL_REG = const(0x800D)

_NEW_DATA = const(0x0008)    # status bit 3 (10.7.1, Figure 11)
_OVERWRITE = const(0x0010)   # status bit 4
_CHESS = const(0x1000)       # control bit 12 (Figure 12)
_KEEP_BITS = const(0xEC02)   # control: reserved bits and ADC resolution stay as found

# Auxiliary words, as indexes into the 832-word RAM image (10.7.2, Figure 14)
_VBE = const(768)       # 0x0700
_CP_SP0 = const(776)    # 0x0708
_GAIN = const(778)      # 0x070A
_PTAT = const(800)      # 0x0720
_CP_SP1 = const(808)    # 0x0728
_VDD_PIX = const(810)   # 0x072A

REFRESH_RATES = (0.5, 1, 2, 4, 8, 16, 32, 64)  # control bits 9..7 = index (Figure 12)
MAX_FLAGGED = const(4)  # datasheet section 9 and Table 10 note 4

_NAN = float("nan")


class SensorError(OSError):
    """The thermal sensor cannot give a trustworthy frame (bus, timeout, EEPROM, frozen)."""


def _signed(value, bits):
    # Table 10: EEPROM fields are two's complement unless noted.
    if value >= 1 << (bits - 1):
        value -= 1 << bits
    return value


def _word(raw, index):
    # RAM words arrive big-endian (10.2.1.4) and are signed (revision history 18/05/2017).
    v = (raw[2 * index] << 8) | raw[2 * index + 1]
    return v - 0x10000 if v & 0x8000 else v


def pixel_subpage(index, chess):
    """Subpage (0 or 1) that measures pixel `index` in chess or interleaved mode (10.6)."""
    row = index >> 5
    return (row ^ index) & 1 if chess else row & 1


def neighbours(index):
    """Indexes of the up-to-4 pixels sharing an edge with `index`."""
    row, col = index >> 5, index & 31
    out = []
    if row > 0:
        out.append(index - COLS)
    if row < ROWS - 1:
        out.append(index + COLS)
    if col > 0:
        out.append(index - 1)
    if col < COLS - 1:
        out.append(index + 1)
    return out


class Calibration:
    """Every parameter of datasheet 11.1, restored once from the EEPROM.

    Scalars are plain numbers, small groups are tuples, per-pixel values are array('f').
    """

    def __init__(self):
        self.offset = array("f", [0.0] * PIXELS)
        self.alpha = array("f", [0.0] * PIXELS)
        self.kta = array("f", [0.0] * PIXELS)
        self.kv = array("f", [0.0] * PIXELS)
        self.broken = ()     # pixel word 0x0000: no output (Table 10 note 1)
        self.outliers = ()   # pixel word bit 0: out of calibration spec (Table 10 note 2)


def extract(ee):
    """Restore the calibration (datasheet 11.1) from the 832 EEPROM words 0x2400..0x273F.

    Raises SensorError when the content cannot be a calibrated MLX90640.
    """
    if len(ee) != EE_WORDS:
        raise SensorError("MLX90640 EEPROM: %d words, expected %d" % (len(ee), EE_WORDS))
    first = ee[0]
    for w in ee:
        if w != first:
            break
    else:
        raise SensorError("MLX90640 EEPROM reads all 0x%04X: not a calibrated sensor" % first)
    c = Calibration()
    # 11.1.1 supply voltage sensor
    c.kvdd = _signed(ee[0x33] >> 8, 8) * 32
    c.vdd25 = ((ee[0x33] & 0xFF) - 256) * 32 - 8192
    # 11.1.2 ambient (die) temperature sensor
    c.kv_ptat = _signed(ee[0x32] >> 10, 6) / 4096
    c.kt_ptat = _signed(ee[0x32] & 0x3FF, 10) / 8
    c.vptat25 = _signed(ee[0x31], 16)
    c.alpha_ptat = (ee[0x10] >> 12) / 4 + 8
    # 11.1.7 gain, 11.1.8 KsTa, 11.1.16 TGC, 11.1.17 resolution
    c.gain_ee = _signed(ee[0x30], 16)
    c.ks_ta = _signed(ee[0x3C] >> 8, 8) / 8192
    c.tgc = _signed(ee[0x3C] & 0xFF, 8) / 32
    c.resolution_ee = (ee[0x38] >> 12) & 3
    # Device options bit 11 clear: calibrated in chess pattern (the factory default, 10.6).
    c.chess_calibrated = not (ee[0x0A] & 0x0800)
    # 11.1.9 corner temperatures, 11.1.10 KsTo, 11.1.11 range sensitivity corrections
    step = ((ee[0x3F] >> 12) & 3) * 10
    ct3 = ((ee[0x3F] >> 4) & 0xF) * step
    ct4 = ((ee[0x3F] >> 8) & 0xF) * step + ct3
    c.ct = (-40, 0, ct3, ct4)
    ks_div = 1 << ((ee[0x3F] & 0xF) + 8)
    k = (_signed(ee[0x3D] & 0xFF, 8) / ks_div, _signed(ee[0x3D] >> 8, 8) / ks_div,
         _signed(ee[0x3E] & 0xFF, 8) / ks_div, _signed(ee[0x3E] >> 8, 8) / ks_div)
    c.ks_to = k
    c.alpha_corr = (1 / (1 + k[0] * 40), 1.0, 1 + k[1] * ct3,
                    (1 + k[1] * ct3) * (1 + k[2] * (ct4 - ct3)))
    # 11.1.5 / 11.1.6 scales shared by pixels and the compensation pixel
    kv_div = 1 << ((ee[0x38] >> 8) & 0xF)
    kta_div = 1 << (((ee[0x38] >> 4) & 0xF) + 8)
    kta_mul = 1 << (ee[0x38] & 0xF)
    # 11.1.12 - 11.1.15 compensation pixel (one per subpage)
    acp = (ee[0x39] & 0x3FF) / (1 << (((ee[0x20] >> 12) & 0xF) + 27))
    c.cp_alpha = (acp, acp * (1 + _signed(ee[0x39] >> 10, 6) / 128))
    ocp = _signed(ee[0x3A] & 0x3FF, 10)
    c.cp_offset = (ocp, ocp + _signed(ee[0x3A] >> 10, 6))
    c.cp_kv = _signed(ee[0x3B] >> 8, 8) / kv_div
    c.cp_kta = _signed(ee[0x3B] & 0xFF, 8) / kta_div
    # 11.1.3.1 interleaved-pattern corrections IL_CHESS_C1..C3
    c.il_chess = (_signed(ee[0x35] & 0x3F, 6) / 16, _signed((ee[0x35] >> 6) & 0x1F, 5) / 2,
                  _signed(ee[0x35] >> 11, 5) / 8)
    _extract_pixels(ee, c, kv_div, kta_div, kta_mul)
    _check(c)
    return c


def _nibble(ee, base, n):
    # OCC/ACC rows and columns: four signed 4-bit values per word, first in bits 3..0.
    return _signed((ee[base + (n >> 2)] >> ((n & 3) * 4)) & 0xF, 4)


def _extract_pixels(ee, c, kv_div, kta_div, kta_mul):
    # 11.1.3 offset, 11.1.4 sensitivity, 11.1.5 Kv, 11.1.6 Kta, Table 10 pixel words
    off_avg = _signed(ee[0x11], 16)
    occ_row = 1 << ((ee[0x10] >> 8) & 0xF)
    occ_col = 1 << ((ee[0x10] >> 4) & 0xF)
    occ_rem = 1 << (ee[0x10] & 0xF)
    alpha_ref = ee[0x21]
    acc_row = 1 << ((ee[0x20] >> 8) & 0xF)
    acc_col = 1 << ((ee[0x20] >> 4) & 0xF)
    acc_rem = 1 << (ee[0x20] & 0xF)
    alpha_div = 1 << (((ee[0x20] >> 12) & 0xF) + 30)
    # Kv/Kta averages by (row, column) parity: index = row odd + 2 * column odd, counting
    # rows/columns from 0 (the datasheet counts from 1, so its "odd" is our even).
    kv_avg = [_signed((ee[0x34] >> (12 - 4 * n)) & 0xF, 4) for n in range(4)]
    kta_avg = [_signed((ee[0x36 + (n >> 1)] >> (0 if n & 1 else 8)) & 0xFF, 8) for n in range(4)]
    broken = []
    outliers = []
    for i in range(PIXELS):
        row = i >> 5
        col = i & 31
        w = ee[0x40 + i]
        par = (row & 1) + 2 * (col & 1)
        c.offset[i] = (off_avg + _nibble(ee, 0x12, row) * occ_row
                       + _nibble(ee, 0x18, col) * occ_col + _signed(w >> 10, 6) * occ_rem)
        c.alpha[i] = (alpha_ref + _nibble(ee, 0x22, row) * acc_row
                      + _nibble(ee, 0x28, col) * acc_col
                      + _signed((w >> 4) & 0x3F, 6) * acc_rem) / alpha_div
        c.kta[i] = (kta_avg[par] + _signed((w >> 1) & 7, 3) * kta_mul) / kta_div
        c.kv[i] = kv_avg[par] / kv_div
        if w == 0:
            broken.append(i)
        elif w & 1:
            outliers.append(i)
    c.broken = tuple(broken)
    c.outliers = tuple(outliers)


def _check(c):
    # Sanity limits wide around every unit seen (datasheet example, maker's example); a
    # corrupted read fails them long before it could give a plausible-looking temperature.
    flagged = c.broken + c.outliers
    if len(flagged) > MAX_FLAGGED:
        raise SensorError("MLX90640 EEPROM flags %d bad pixels (at most %d exist): corrupt EEPROM"
                          % (len(flagged), MAX_FLAGGED))
    for a in flagged:
        for b in flagged:
            if b in neighbours(a):
                raise SensorError("MLX90640 EEPROM flags adjacent pixels %d and %d: corrupt EEPROM"
                                  % (a, b))
    if not (c.kvdd < 0 and 20 <= c.kt_ptat <= 80 and c.gain_ee > 0 and 4000 <= c.vptat25 <= 20000):
        raise SensorError("MLX90640 EEPROM: implausible Vdd/PTAT/gain calibration (kVdd %d, KtPTAT %s, "
                          "gain %d, PTAT25 %d)" % (c.kvdd, c.kt_ptat, c.gain_ee, c.vptat25))
    for i in range(PIXELS):
        if not 1e-9 < c.alpha[i] < 1e-6 and i not in c.broken:
            raise SensorError("MLX90640 EEPROM: pixel %d sensitivity %s out of range" % (i, c.alpha[i]))
    if not (0 < c.cp_alpha[0] < 1e-6 and 0 < c.cp_alpha[1] < 1e-6):
        raise SensorError("MLX90640 EEPROM: compensation pixel sensitivity out of range")


def vdd_of(cal, raw, control):
    """Supply voltage (V) from a RAM image (datasheet 11.2.2.1 resolution restore, 11.2.2.2)."""
    corr = (1 << cal.resolution_ee) / (1 << ((control >> 10) & 3))
    return (corr * _word(raw, _VDD_PIX) - cal.vdd25) / cal.kvdd + 3.3


def ta_of(cal, raw, vdd):
    """Die temperature Ta (degC) from a RAM image (datasheet 11.2.2.3)."""
    ptat = _word(raw, _PTAT)
    den = ptat * cal.alpha_ptat + _word(raw, _VBE)
    if den == 0:
        raise SensorError("MLX90640: PTAT/Vbe words are zero: sensor not measuring")
    art = ptat / den * 262144
    return (art / (1 + cal.kv_ptat * (vdd - 3.3)) - cal.vptat25) / cal.kt_ptat + 25


def subpage_to(cal, raw, control, subpage, out, pixels=None, emissivity=1.0, tr=None):
    """Object temperature (degC) of the pixels measured in `subpage`, written to out[index].

    raw: the 1664-byte RAM image 0x0400..0x073F as read (big-endian words).
    control: the control register 0x800D the data was measured with (pattern, resolution).
    pixels: indexes to compute (others of the subpage are left alone); None = all.
    tr: reflected temperature (degC); None = Ta - 8 (datasheet 12.1.2 note).
    Returns (ta, vdd). Implements datasheet 11.2.2.4 - 11.2.2.9.1.
    """
    vdd = vdd_of(cal, raw, control)
    ta = ta_of(cal, raw, vdd)
    if not (2.5 < vdd < 4.0 and -45.0 < ta < 130.0):
        raise SensorError("MLX90640: implausible Vdd %.3f V / Ta %.2f C: bad data" % (vdd, ta))
    if tr is None:
        tr = ta - 8
    gain_raw = _word(raw, _GAIN)
    if gain_raw == 0:
        raise SensorError("MLX90640: gain word is zero: sensor not measuring")
    kgain = cal.gain_ee / gain_raw                       # 11.2.2.4
    dta = ta - 25
    dvdd = vdd - 3.3
    chess = control & _CHESS
    il_fix = (not chess) == cal.chess_calibrated         # 11.1.3.1: pattern differs from calibration
    # 11.2.2.6 compensation pixel of this subpage, offset-, Ta- and Vdd-compensated
    cp_off = cal.cp_offset[subpage]
    if subpage and il_fix:
        cp_off = cp_off + cal.il_chess[0]
    cp = (_word(raw, _CP_SP1 if subpage else _CP_SP0) * kgain
          - cp_off * (1 + cal.cp_kta * dta) * (1 + cal.cp_kv * dvdd))
    tgc_cp = cal.tgc * cp                                # 11.2.2.7
    alpha_cp = cal.tgc * cal.cp_alpha[subpage]
    ks_ta = 1 + cal.ks_ta * dta                          # 11.2.2.8
    tak4 = (ta + 273.15) ** 4                            # 11.2.2.9
    trk4 = (tr + 273.15) ** 4
    tatr = trk4 - (trk4 - tak4) / emissivity
    inv_e = 1 / emissivity
    k2 = cal.ks_to[1]
    basic = 1 - k2 * 273.15
    ks_to = cal.ks_to
    ct = cal.ct
    ct1 = ct[1]
    ct2 = ct[2]
    ct3 = ct[3]
    corr = cal.alpha_corr
    off = cal.offset
    alpha = cal.alpha
    kta = cal.kta
    kv = cal.kv
    il_c2 = cal.il_chess[1]
    il_c3 = cal.il_chess[2]
    for i in (range(PIXELS) if pixels is None else pixels):
        row = i >> 5
        if ((row ^ i) & 1 if chess else row & 1) != subpage:
            continue
        v = (raw[2 * i] << 8) | raw[2 * i + 1]
        if v & 0x8000:
            v -= 0x10000
        # 11.2.2.5.1 gain, 11.2.2.5.3 offset/Ta/Vdd, 11.2.2.5.4 emissivity, 11.2.2.7 gradient
        ir = v * kgain - off[i] * (1 + kta[i] * dta) * (1 + kv[i] * dvdd)
        if il_fix:
            # 11.1.3.1: conversion pattern is 0, -1, 0, +1 over columns mod 4, sign by row parity
            m = i & 3
            conv = (0 if m == 0 or m == 2 else (m - 2)) * (1 - 2 * (row & 1))
            ir = ir + il_c3 * (2 * (row & 1) - 1) - il_c2 * conv
        ir = ir * inv_e - tgc_cp
        a = (alpha[i] - alpha_cp) * ks_ta                 # 11.2.2.8
        rad = a * a * a * (ir + a * tatr)
        if rad < 0:
            out[i] = _NAN
            continue
        den = a * basic + k2 * rad ** 0.25
        x = ir / den + tatr if den > 0 else -1
        if x <= 0:
            out[i] = _NAN
            continue
        t = x ** 0.25 - 273.15
        # 11.2.2.9.1 extended ranges: redo with the range's own KsTo and corner temperature
        r = 0 if t < ct1 else (1 if t < ct2 else (2 if t < ct3 else 3))
        den = a * corr[r] * (1 + ks_to[r] * (t - ct[r]))
        x = ir / den + tatr if den > 0 else -1
        out[i] = x ** 0.25 - 273.15 if x > 0 else _NAN
    return ta, vdd


class MLX90640:
    """Driver for one MLX90640 on a MicroPython machine.I2C-like bus.

    begin() once, then read() (blocking, with timeout) or poll() (non-blocking, for an
    asyncio loop that owns the timing).
    """

    def __init__(self, i2c, address=0x33, refresh_hz=8, chess=True, emissivity=0.95,
                 reflected_c=None, sleep_ms=None, frozen_limit=4):
        if refresh_hz not in REFRESH_RATES:
            raise ValueError("refresh_hz must be one of %s" % (REFRESH_RATES,))
        if not 0 < emissivity <= 1:
            raise ValueError("emissivity must be in (0, 1]")
        self._i2c = i2c
        self._addr = address
        self.refresh_hz = refresh_hz
        self.chess = bool(chess)
        self.emissivity = emissivity
        self.reflected_c = reflected_c      # None: Ta - 8 (datasheet 12.1.2)
        self._sleep_ms = sleep_ms or _board_sleep_ms
        self.frozen_limit = frozen_limit    # identical consecutive RAM reads that mean "frozen"
        period = 1000 / refresh_hz          # one subpage per period (10.4)
        self._poll_ms = max(1, min(20, int(period / 8)))
        self.default_timeout_ms = int(3 * period) + 100
        self.cal = None
        self.ta = None
        self.vdd = None
        self.broken_pixels = ()
        self.control = 0
        self._raw = bytearray(2 * RAM_WORDS)
        self._prev = bytearray(2 * RAM_WORDS)
        self._reg = bytearray(2)
        self._same = 0
        self._done = 0
        self._settle_ms = 0
        self._extra = array("H")
        self._repair = ()

    # -- bus ---------------------------------------------------------------------------
    def _read_into(self, reg, buf, what):
        try:
            self._i2c.readfrom_mem_into(self._addr, reg, buf, addrsize=16)
        except OSError as e:
            raise SensorError("MLX90640 at 0x%02X: I2C error reading %s (0x%04X): %r"
                              % (self._addr, what, reg, e))

    def _read_reg(self, reg, what):
        self._read_into(reg, self._reg, what)
        return (self._reg[0] << 8) | self._reg[1]

    def _write_reg(self, reg, value, what):
        self._reg[0] = value >> 8
        self._reg[1] = value & 0xFF
        try:
            self._i2c.writeto_mem(self._addr, reg, self._reg, addrsize=16)
        except OSError as e:
            raise SensorError("MLX90640 at 0x%02X: I2C error writing %s (0x%04X): %r"
                              % (self._addr, what, reg, e))

    # -- setup -------------------------------------------------------------------------
    def begin(self):
        """Read the EEPROM once, restore the calibration, program the control register."""
        buf = bytearray(2 * EE_WORDS)
        self._read_into(EE_ADDR, buf, "EEPROM")
        ee = array("H", [0] * EE_WORDS)
        for i in range(EE_WORDS):
            ee[i] = (buf[2 * i] << 8) | buf[2 * i + 1]
        self.cal = extract(ee)
        self._plan_repairs()
        found = self._read_reg(CONTROL_REG, "control register")
        # Subpage mode on and toggling (Table 6), refresh rate, reading pattern (Figure 12).
        want = ((found & _KEEP_BITS) | 0x0001 | (REFRESH_RATES.index(self.refresh_hz) << 7)
                | (_CHESS if self.chess else 0))
        self._write_reg(CONTROL_REG, want, "control register")
        got = self._read_reg(CONTROL_REG, "control register")
        if got != want:
            raise SensorError("MLX90640: control register reads 0x%04X after writing 0x%04X"
                              % (got, want))
        self.control = want
        # A new rate applies only after the subpage under measurement (12.2.1): the first
        # frame may take one more period of the old rate.
        self._settle_ms = int(1000 / REFRESH_RATES[(found >> 7) & 7])
        self._done = 0
        self._same = 0

    def _plan_repairs(self):
        # Table 10 note 4: flagged pixels are never adjacent, so each one is replaced by the
        # mean of its edge neighbours, which are good pixels.
        flagged = sorted(self.cal.broken + self.cal.outliers)
        self.broken_pixels = tuple(flagged)
        repair = []
        extra = []
        for p in flagged:
            nb = tuple(neighbours(p))
            repair.append((p, nb))
            extra.extend(nb)
        self._repair = tuple(repair)
        self._extra = array("H", extra)

    # -- frames ------------------------------------------------------------------------
    def poll(self, frame, pixels=None):
        """Take one new subpage if the sensor has one; True once a full frame is in `frame`.

        Non-blocking: one status read when no data is waiting. Raises SensorError.
        """
        if self.cal is None:
            raise SensorError("MLX90640: begin() was not called")
        status = self._read_reg(STATUS_REG, "status")
        if not status & _NEW_DATA:
            return False
        subpage = status & 7                  # last measured subpage (Figure 11)
        if subpage > 1:
            raise SensorError("MLX90640: status 0x%04X names reserved subpage %d" % (status, subpage))
        self._raw, self._prev = self._prev, self._raw
        self._read_into(RAM_ADDR, self._raw, "RAM")
        # Clear "new data" once the data is read (10.4, Figure 7); keep overwrite enabled.
        self._write_reg(STATUS_REG, status & _OVERWRITE, "status")
        if self._raw == self._prev:
            self._same += 1
            if self.frozen_limit and self._same >= self.frozen_limit:
                raise SensorError("MLX90640: frozen frame: RAM identical in %d reads in a row"
                                  % (self._same + 1))
        else:
            self._same = 0
        cal = self.cal
        e = self.emissivity
        tr = self.reflected_c
        self.ta, self.vdd = subpage_to(cal, self._raw, self.control, subpage, frame, pixels, e, tr)
        if pixels is not None and self._extra:
            subpage_to(cal, self._raw, self.control, subpage, frame, self._extra, e, tr)
        self._done |= 1 << subpage
        if self._done != 3:
            return False
        self._done = 0
        for p, nb in self._repair:
            if pixels is None or p in pixels:
                s = 0.0
                for n in nb:
                    s += frame[n]
                frame[p] = s / len(nb)
        return True

    def read(self, frame, pixels=None, timeout_ms=None):
        """Wait for both subpages of a new full frame and fill `frame` (degC).

        frame: array('f', 768) (or any indexable of 768 floats); pixels: indexes to compute,
        None = all (flagged pixels are replaced by their neighbours' mean). Updates ta, vdd.
        Raises SensorError on timeout, bus error, bad data or a frozen frame.
        """
        if timeout_ms is None:
            timeout_ms = self.default_timeout_ms + self._settle_ms
        self._done = 0
        waited = 0
        while not self.poll(frame, pixels):
            if waited >= timeout_ms:
                raise SensorError("MLX90640: no new data within %d ms (status bit 3 never set)"
                                  % timeout_ms)
            self._sleep_ms(self._poll_ms)
            waited += self._poll_ms
        self._settle_ms = 0
