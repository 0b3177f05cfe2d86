"""Register-level MLX90640 emulator (I2C 0x33), Zephyr emulator shape.

Register map (datasheet Rev 12, 10.7): EEPROM 0x2400..0x273F (read-only here), RAM
0x0400..0x073F (pixels and the auxiliary block), status 0x8000, control 0x800D (power-on
value from EEPROM 0x240C), I2C config 0x800F.

Backend (real units): a scene of 768 object temperatures (degC, index row*32+col), the air
temperature (the die runs `self_heating_c` above it) and the supply voltage. Each measured
subpage is written by inverting the datasheet equations (11.2.2) so that a driver assuming
`read_emissivity` and `read_reflected_c` (None: Ta - 8) reads the scene back: Vdd word,
PTAT/Vbe for Ta, gain word, compensation-pixel words, then per pixel the IR signal (iterating
the KsTo range correction), TGC, emissivity, interleave correction, Kta/Kv offsets, gain,
rounded to int16. The Ta-channel words carry a little ADC jitter, so no two subpages are
ever bit-identical (a real sensor's never are); pixel noise is off unless asked for (the
scene owns it).

Per-unit truth: `bias_c`, `pixel_error_c` (fixed pattern) and `drift_c_per_hour` make the
unit read (scene + error); `truth_error_c()` tells how much. `MLX90640Emulator.unit(seed)`
draws all of that with the datasheet's accuracy (frame +-1 degC, non-uniformity +-0.5 degC
zone 1, section 12.1.1) and a generated EEPROM.

Timing: mode "poll" - a subpage completes right after the second status read in a row that
finds no new data (a status write restarts the count; so a driver that writes "clear" and
reads it back, as the maker's driver does, does not lose the subpage it is about to read):
instant for tests, no clock involved; mode "timed" - subpages complete every 1/refresh-rate seconds of
`clock()` (control bits 9..7), alternating 0, 1 (Table 6).

Faults (besides `fault_hook`/`unplugged` from I2CEmulator): `stuck_data_ready` (status bit 3
never set), `frozen` (RAM stops updating, status still toggles), `eeprom_fault` ("random",
"zeros", "ones": what EEPROM reads return). EEPROM reads above 400 kHz NACK when
`strict_eeprom_speed` (datasheet section 8 note 5); `eeprom_read_freqs` records them.
"""
from __future__ import annotations

import errno
import time
from typing import Callable, Optional, Sequence

import numpy as np

from kiosk import mlx90640 as fw
from sim.board.i2c import I2CEmulator, Transaction
from sim.devices.mlx90640_eeprom import generate_eeprom, pick_flagged

EE_BASE, EE_END = 0x2400, 0x2740
RAM_BASE, RAM_END = 0x0400, 0x0740
STATUS, CONTROL = 0x8000, 0x800D
_ROW = np.arange(768) >> 5
_COL = np.arange(768) & 31
_CHESS_SUB = (_ROW ^ _COL) & 1
_IL_SUB = _ROW & 1
# 11.1.3.1 interleave correction patterns
_IL_PATTERN = _ROW & 1
_CONVERSION = np.select([(_COL & 3) == 1, (_COL & 3) == 3], [-1, 1], 0) * (1 - 2 * _IL_PATTERN)


class MLX90640Emulator(I2CEmulator):
    def __init__(self, eeprom: Optional[Sequence[int]] = None, *, address: int = 0x33, mode: str = "poll",
                 clock: Optional[Callable[[], float]] = None, seed: int = 0, air_c: float = 22.0,
                 self_heating_c: float = 5.0, vdd: float = 3.3, read_emissivity: float = 0.95,
                 read_reflected_c: Optional[float] = None, strict_eeprom_speed: bool = True) -> None:
        super().__init__(address)
        if mode not in ("poll", "timed"):
            raise ValueError("mode is 'poll' or 'timed'")
        self.eeprom = np.array(eeprom if eeprom is not None else generate_eeprom(seed), dtype=np.uint16)
        self.cal = fw.extract([int(w) for w in self.eeprom])   # what a driver will restore
        self.mode = mode
        self.clock = clock or time.monotonic
        self.rng = np.random.default_rng(seed)
        # backend, real units
        self.scene_c = np.full(768, air_c, dtype=np.float64)
        self.air_c = air_c
        self.self_heating_c = self_heating_c
        self.ta_override: Optional[float] = None
        self.vdd = vdd
        self.read_emissivity = read_emissivity
        self.read_reflected_c = read_reflected_c
        self.pixel_noise_k = 0.0
        self.gain_ratio = 1.208       # RAM gain word / EEPROM gain (11.2.2.4)
        self.cp_signal = 0.0          # compensated CP signal (thermal gradient over the package)
        # per-unit truth
        self.bias_c = 0.0
        self.pixel_error_c = np.zeros(768)
        self.drift_c_per_hour = 0.0
        self.outlier_error_c = 2.5    # flagged outliers read this far off (out of spec)
        # faults
        self.stuck_data_ready = False
        self.frozen = False
        self.eeprom_fault: Optional[str] = None
        self.strict_eeprom_speed = strict_eeprom_speed
        self.eeprom_read_freqs: list[int] = []
        self.eeprom_writes = 0
        # registers
        self.ram = np.zeros(832, dtype=np.uint16)
        self.control = int(self.eeprom[0x0C])
        self.status = 0x0000
        self.regs = {0x800E: int(self.eeprom[0x0D]), 0x800F: int(self.eeprom[0x0E]), 0x8010: int(self.eeprom[0x0F])}
        self._next_subpage = 0
        self._last_aux: Optional[bytes] = None
        self.measurements = 0
        self._empty_polls = 0
        self._t0 = self.clock()
        self._next_due = self._t0 + self.period_s

    # -- construction helpers -----------------------------------------------------------
    @classmethod
    def unit(cls, seed: int, *, flagged: int = 0, tgc: float = 0.0, **kw: object) -> "MLX90640Emulator":
        """A random unit: generated EEPROM, bias, fixed-pattern error and drift within spec."""
        rng = np.random.default_rng(seed + 1_000_003)
        bad = pick_flagged(rng, flagged)
        ee = generate_eeprom(seed, tgc=tgc, broken=bad[: flagged // 2], outliers=bad[flagged // 2:])
        emu = cls(ee, seed=seed, **kw)  # type: ignore[arg-type]
        emu.bias_c = float(np.clip(rng.normal(0, 0.4), -1, 1))
        emu.pixel_error_c = np.clip(rng.normal(0, 0.15, 768), -0.5, 0.5)
        emu.drift_c_per_hour = float(rng.normal(0, 3.0 / (3 * 365 * 24)))  # ~3 degC over years
        return emu

    # -- backend ------------------------------------------------------------------------
    def set_scene(self, temps_c: Sequence[float] | np.ndarray) -> None:
        a = np.asarray(temps_c, dtype=np.float64).reshape(768)
        if not np.all(np.isfinite(a)):
            raise ValueError("scene temperatures must be finite")
        self.scene_c = a.copy()

    @property
    def chip_ta_c(self) -> float:
        return self.ta_override if self.ta_override is not None else self.air_c + self.self_heating_c

    @property
    def period_s(self) -> float:
        return 1.0 / fw.REFRESH_RATES[(self.control >> 7) & 7]

    @property
    def chess(self) -> bool:
        return bool(self.control & 0x1000)

    def hours(self) -> float:
        return (self.clock() - self._t0) / 3600.0

    def truth_error_c(self) -> np.ndarray:
        """How far this unit's reading is off the scene, per pixel, right now (ground truth)."""
        err = self.bias_c + self.pixel_error_c + self.drift_c_per_hour * self.hours()
        err = np.broadcast_to(err, (768,)).copy()
        if self.cal.outliers:
            err[list(self.cal.outliers)] += self.outlier_error_c
        return err

    # -- I2C ----------------------------------------------------------------------------
    def handle(self, t: Transaction) -> bytes:
        if not t.write and not t.read_len:
            return b""                         # address-only probe: ACK
        if len(t.write) < 2:
            raise OSError(errno.EIO, "MLX90640 needs a 16-bit register address")
        reg = int.from_bytes(t.write[:2], "big")
        self._advance()
        if t.read_len:
            if len(t.write) != 2 or t.read_len % 2:
                raise OSError(errno.EIO, "malformed MLX90640 read")
            data = self._read(reg, t.read_len // 2, t.freq)
            if reg == STATUS and self.mode == "poll" and not self.status & 0x0008:
                self._empty_polls += 1
                if self._empty_polls >= 2:     # completes right after the 2nd empty poll
                    self._empty_polls = 0
                    self._measure()
            return data
        if len(t.write) != 4:
            raise OSError(errno.EIO, "MLX90640 writes one 16-bit word")
        self._write(reg, int.from_bytes(t.write[2:4], "big"))
        return b""

    def _read(self, reg: int, n: int, freq: int) -> bytes:
        if EE_BASE <= reg and reg + n <= EE_END:
            self.eeprom_read_freqs.append(freq)
            if self.strict_eeprom_speed and freq > 400_000:
                raise OSError(errno.EIO, "EEPROM read above 400 kHz")
            words = self._eeprom_view()[reg - EE_BASE: reg - EE_BASE + n]
        elif RAM_BASE <= reg and reg + n <= RAM_END:
            words = self.ram[reg - RAM_BASE: reg - RAM_BASE + n]
        else:
            words = np.array([self._reg(reg + k) for k in range(n)], dtype=np.uint16)
        return words.astype(">u2").tobytes()

    def _eeprom_view(self) -> np.ndarray:
        if self.eeprom_fault is None:
            return self.eeprom
        if self.eeprom_fault == "zeros":
            return np.zeros_like(self.eeprom)
        if self.eeprom_fault == "ones":
            return np.full_like(self.eeprom, 0xFFFF)
        if self.eeprom_fault == "random":
            return np.random.default_rng(1).integers(0, 0x10000, self.eeprom.shape).astype(np.uint16)
        raise ValueError(f"unknown eeprom_fault {self.eeprom_fault!r}")

    def _reg(self, reg: int) -> int:
        if reg == STATUS:
            return self.status | self._last_subpage
        if reg == CONTROL:
            return self.control
        return self.regs.get(reg, 0)

    def _write(self, reg: int, value: int) -> None:
        if EE_BASE <= reg < EE_END:
            self.eeprom_writes += 1            # the driver must never do this; tests check
        elif reg == STATUS:
            self._empty_polls = 0
            # bits 2..0 are read-only; bit 3 is cleared by writing 0; bits 4, 5 are writable
            self.status = (self.status & 0x0008 & value) | (value & 0x0030)
        elif reg == CONTROL:
            self.control = value
        elif 0x800E <= reg <= 0x8010:
            self.regs[reg] = value

    # -- measurement --------------------------------------------------------------------
    @property
    def _last_subpage(self) -> int:
        return (self._next_subpage ^ 1) if self.measurements else 0

    def _subpage_sequence_next(self) -> int:
        # Table 6: subpage mode off -> 0 only; repeat -> the selected one; else alternate
        if not self.control & 0x0001:
            return 0
        if self.control & 0x0008:
            return (self.control >> 4) & 1
        return self._next_subpage

    def _advance(self) -> None:
        if self.mode != "timed":
            return
        now = self.clock()
        if now < self._next_due:
            return
        n = int((now - self._next_due) / self.period_s) + 1
        if n > 2:                              # long gap: only the last two matter
            for _ in range(n - 2):
                self._next_subpage = self._subpage_sequence_next() ^ 1
                self._next_due += self.period_s
            n = 2
        for _ in range(n):
            self._measure()
            self._next_due += self.period_s    # a new rate applies after this subpage (12.2.1)

    def _measure(self) -> None:
        sub = self._subpage_sequence_next()
        self._next_subpage = sub ^ 1
        self.measurements += 1
        if self.stuck_data_ready:
            return
        if not self.frozen:
            self._write_subpage(sub)
        self.status |= 0x0008

    def _write_subpage(self, sub: int) -> None:
        cal = self.cal
        aux, ta, vdd, kgain, cp = self._aux_block(sub)
        self.ram[768:] = aux
        mask = (_CHESS_SUB if self.chess else _IL_SUB) == sub
        target = self.scene_c + self.truth_error_c()
        if self.pixel_noise_k:
            target = target + self.rng.normal(0, self.pixel_noise_k, 768)
        idx = np.nonzero(mask)[0]
        raw = self._invert_pixels(idx, target[idx], sub, ta, vdd, kgain, cp)
        if cal.broken:
            dead = [p for p in cal.broken if mask[p]]
            raw[np.isin(idx, dead)] = self.rng.integers(-32768, 32767, len(dead))
        self.ram[idx] = raw.astype(np.int16).view(np.uint16)

    def _aux_block(self, sub: int) -> tuple[np.ndarray, float, float, float, float]:
        """Auxiliary words for the chip's Ta and Vdd, plus what a driver will compute from them."""
        cal = self.cal
        while True:
            aux = np.full(64, 0x7FFF, dtype=np.int64)
            res_corr = (1 << cal.resolution_ee) / (1 << ((self.control >> 10) & 3))
            aux[42] = round(((self.vdd - 3.3) * cal.kvdd + cal.vdd25) / res_corr) + self.rng.integers(-2, 3)
            ram = self._ram_bytes(aux)
            vdd_read = fw.vdd_of(cal, ram, self.control)
            ta = self.chip_ta_c
            art = ((ta - 25) * cal.kt_ptat + cal.vptat25) * (1 + cal.kv_ptat * (vdd_read - 3.3))
            vbe = np.round(19500 - 35 * (ta - 25)) + np.arange(-40, 41)
            ptat = np.round(art * vbe / (262144 - art * cal.alpha_ptat))
            ta_cand = ((ptat / (ptat * cal.alpha_ptat + vbe) * 262144) / (1 + cal.kv_ptat * (vdd_read - 3.3))
                       - cal.vptat25) / cal.kt_ptat + 25
            best = np.argsort(np.abs(ta_cand - ta))[:5]
            k = int(best[self.rng.integers(0, 5)])
            aux[0] = int(vbe[k])
            aux[32] = int(ptat[k])
            # RAM gain runs ~1.21x the EEPROM gain in the maker's example (0x1A56 vs 5580); the
            # ratio sets the pixel LSB in degC (about 0.15-0.2 degC per LSB near 0 degC).
            aux[10] = round(cal.gain_ee * self.gain_ratio) + self.rng.integers(-1, 2)
            ram = self._ram_bytes(aux)
            vdd_read = fw.vdd_of(cal, ram, self.control)
            ta_read = fw.ta_of(cal, ram, vdd_read)
            kgain = cal.gain_ee / int(aux[10])
            dta, dvdd = ta_read - 25, vdd_read - 3.3
            cp_scale = (1 + cal.cp_kta * dta) * (1 + cal.cp_kv * dvdd)
            il_fix = (not self.chess) == cal.chess_calibrated
            cp_off = [cal.cp_offset[0], cal.cp_offset[1] + (cal.il_chess[0] if il_fix else 0)]
            for s, word in ((0, 8), (1, 40)):
                aux[word] = round((self.cp_signal + cp_off[s] * cp_scale) / kgain)
            cp = aux[40 if sub else 8] * kgain - cp_off[sub] * cp_scale
            block = (aux & 0xFFFF).astype(np.uint16)
            if self._last_aux is None or block.tobytes() != self._last_aux:
                self._last_aux = block.tobytes()
                return block, ta_read, vdd_read, kgain, float(cp)

    def _ram_bytes(self, aux: np.ndarray) -> bytes:
        ram = self.ram.copy()
        ram[768:] = (aux & 0xFFFF).astype(np.uint16)
        return ram.astype(">u2").tobytes()

    def _invert_pixels(self, idx: np.ndarray, t_obj: np.ndarray, sub: int, ta: float, vdd: float,
                       kgain: float, cp: float) -> np.ndarray:
        """Raw words that make the datasheet's forward equations give t_obj (inverse of 11.2.2)."""
        cal = self.cal
        e = self.read_emissivity
        tr = ta - 8 if self.read_reflected_c is None else self.read_reflected_c
        dta, dvdd = ta - 25, vdd - 3.3
        alpha = np.asarray(cal.alpha, dtype=np.float64)[idx]
        a = (alpha - cal.tgc * cal.cp_alpha[sub]) * (1 + cal.ks_ta * dta)
        tak4, trk4 = (ta + 273.15) ** 4, (tr + 273.15) ** 4
        tatr = trk4 - (trk4 - tak4) / e
        ks_to, ct, corr = np.array(cal.ks_to), np.array(cal.ct, dtype=float), np.array(cal.alpha_corr)
        k2 = cal.ks_to[1]
        tk4 = (t_obj + 273.15) ** 4
        t0 = t_obj.copy()
        for _ in range(8):                     # fixed point on the first-pass estimate t0
            r = np.searchsorted(ct[1:], t0, side="right")
            ir = (tk4 - tatr) * a * corr[r] * (1 + ks_to[r] * (t0 - ct[r]))
            sx = k2 * np.sqrt(np.sqrt(np.maximum(a ** 3 * (ir + a * tatr), 0)))
            t0 = np.sqrt(np.sqrt(np.maximum(ir / (a * (1 - k2 * 273.15) + sx) + tatr, 0))) - 273.15
        pre = (ir + cal.tgc * cp) * e
        if (not self.chess) == cal.chess_calibrated:
            pre = pre - (cal.il_chess[2] * (2 * _IL_PATTERN[idx] - 1) - cal.il_chess[1] * _CONVERSION[idx])
        off = np.asarray(cal.offset, dtype=np.float64)[idx]
        kta = np.asarray(cal.kta, dtype=np.float64)[idx]
        kv = np.asarray(cal.kv, dtype=np.float64)[idx]
        raw = np.round((pre + off * (1 + kta * dta) * (1 + kv * dvdd)) / kgain)
        return np.clip(raw, -32768, 32767).astype(np.int64)
