"""EEPROM images for the MLX90640 emulator: the maker's example dump, or generated units.

Generated images follow the bit layout of datasheet Table 9/10 (Rev 12) field by field, with
per-unit spread around typical values (the datasheet example and the maker's example dump):
every unit gets its own offsets, sensitivity profile (lower towards the corners, as the
lens vignettes), Kta/Kv, PTAT and Vdd constants, compensation pixel and KsTo. Optionally up
to four non-adjacent pixels are flagged broken (word 0x0000) or outlier (bit 0), Table 10
notes 1-4.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "data" / "mlx90640-melexis-example"
WORDS = 832
PIXELS = 768


def example_eeprom(path: Optional[Path] = None) -> list[int]:
    """The 832 EEPROM words of the maker's worked example (Input_data.csv, row after 'EEPROM')."""
    path = path or EXAMPLE_DIR / "Input_data.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the maker's example data is not there (data/)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    for k, row in enumerate(rows):
        if len(row) > 1 and row[1].strip() == "EEPROM":
            words = [int(c, 16) for c in rows[k + 1][1:1 + WORDS]]
            if len(words) == WORDS:
                return words
    raise ValueError(f"{path}: no EEPROM row of {WORDS} words")


def _put(ee: list[int], index: int, shift: int, bits: int, value: int) -> None:
    """Store `value` (two's complement if negative) in bits shift..shift+bits-1 of word `index`."""
    lo, hi = -(1 << (bits - 1)), (1 << bits) - 1
    if not lo <= value <= hi:
        raise ValueError(f"value {value} does not fit {bits} bits")
    mask = ((1 << bits) - 1) << shift
    ee[index] = (ee[index] & ~mask) | ((value & ((1 << bits) - 1)) << shift)


def _nibbles(ee: list[int], base: int, values: Iterable[int]) -> None:
    for n, v in enumerate(values):
        _put(ee, base + n // 4, 4 * (n % 4), 4, int(v))


def _adjacent(a: int, b: int) -> bool:
    return abs((a >> 5) - (b >> 5)) + abs((a & 31) - (b & 31)) == 1


def pick_flagged(rng: np.random.Generator, count: int) -> list[int]:
    """`count` random pixels, no two adjacent (Table 10 note 4)."""
    chosen: list[int] = []
    while len(chosen) < count:
        p = int(rng.integers(0, PIXELS))
        if all(p != q and not _adjacent(p, q) for q in chosen):
            chosen.append(p)
    return chosen


def generate_eeprom(seed: int = 0, *, tgc: float = 0.0, broken: Iterable[int] = (),
                    outliers: Iterable[int] = (), calibrated_chess: bool = True) -> list[int]:
    """A plausible EEPROM image for one unit; `seed` makes the unit, flags are explicit."""
    rng = np.random.default_rng(seed)
    ee = [0] * WORDS
    # Configuration words (Table 7/8): trims and options as in the example unit, random ID,
    # control register 1 = 0x1901 (2 Hz, 18 bit, chess), I2C address 0x33.
    header = [0x00AE, 0x499A, 0x0000, 0x2061, 0x0005, 0x0320, 0x03E0, 0, 0, 0, 0x0499, 0x0000,
              0x1901, 0x0000, 0x0000, 0xBE33]
    header[7:10] = [int(x) for x in rng.integers(0, 0x10000, 3)]
    if not calibrated_chess:
        header[10] |= 0x0800
    ee[:16] = header
    # Ta sensor (11.1.2): alphaPTAT code, OCC scales row 2, column 1, remainder 0
    ee[0x10] = (int(rng.integers(3, 6)) << 12) | (2 << 8) | (1 << 4) | 0
    ee[0x31] = int(rng.normal(12200, 100)) & 0xFFFF
    _put(ee, 0x32, 10, 6, int(np.clip(round(rng.normal(9, 2)), -32, 31)))
    _put(ee, 0x32, 0, 10, int(round(rng.normal(42.5, 0.6) * 8)))
    # Vdd sensor (11.1.1)
    _put(ee, 0x33, 8, 8, int(np.clip(round(rng.normal(-100, 3)), -128, -80)))
    _put(ee, 0x33, 0, 8, int(np.clip(round(rng.normal(120, 4)), 100, 140)))
    # Offsets (11.1.3): average, row and column steps, per-pixel remainder
    _put(ee, 0x11, 0, 16, int(round(rng.normal(-60, 15))))
    occ_rows = rng.integers(-3, 4, 24)
    occ_cols = rng.integers(-3, 4, 32)
    _nibbles(ee, 0x12, occ_rows)
    _nibbles(ee, 0x18, occ_cols)
    pix_off = rng.integers(-12, 13, PIXELS)
    # Sensitivity (11.1.4): alpha scale 38, ACC scales row 8, column 9, remainder 5.
    ee[0x20] = (8 << 12) | (8 << 8) | (9 << 4) | 5
    rows = (np.arange(24) - 11.5) / 11.5
    cols = (np.arange(32) - 15.5) / 15.5
    level = rng.normal(13500, 700)
    target = level * np.outer(1 - 0.18 * rows ** 2, 1 - 0.30 * cols ** 2)
    target *= 1 + rng.normal(0, 0.01, target.shape)
    ref = int(round(target.mean()))
    acc_rows = np.clip(np.round((target.mean(axis=1) - ref) / 256), -8, 7).astype(int)
    rest = target - ref - acc_rows[:, None] * 256
    acc_cols = np.clip(np.round(rest.mean(axis=0) / 512), -8, 7).astype(int)
    rest = rest - acc_cols[None, :] * 512
    pix_alpha = np.clip(np.round(rest / 32), -32, 31).astype(int).ravel()
    ee[0x21] = ref
    _nibbles(ee, 0x22, acc_rows)
    _nibbles(ee, 0x28, acc_cols)
    # Gain (11.1.7), PTAT_25 above; Kv averages (11.1.5), IL chess corrections (11.1.3.1)
    _put(ee, 0x30, 0, 16, int(round(rng.normal(5600, 300))))
    for n in range(4):
        _put(ee, 0x34, 12 - 4 * n, 4, int(rng.integers(4, 8)))
    _put(ee, 0x35, 0, 6, int(rng.integers(4, 13)))
    _put(ee, 0x35, 6, 5, int(rng.integers(3, 10)))
    _put(ee, 0x35, 11, 5, int(rng.integers(-2, 3)))
    # Kta averages (11.1.6): RO_CO, RE_CO in 0x2436, RO_CE, RE_CE in 0x2437
    for n in range(4):
        _put(ee, 0x36 + n // 2, 8 if n % 2 == 0 else 0, 8, int(round(rng.normal(55, 6))))
    # Resolution 2 (18 bit), Kv scale 4, Kta scale1 5 (+8), Kta scale2 2
    ee[0x38] = (2 << 12) | (4 << 8) | (5 << 4) | 2
    # Compensation pixel (11.1.12 - 11.1.15)
    _put(ee, 0x39, 10, 6, int(rng.integers(-3, 4)))
    _put(ee, 0x39, 0, 10, int(round(rng.normal(100, 8))))
    _put(ee, 0x3A, 10, 6, int(rng.integers(2, 7)))
    _put(ee, 0x3A, 0, 10, int(round(rng.normal(-70, 10))))
    _put(ee, 0x3B, 8, 8, int(rng.integers(5, 8)))
    _put(ee, 0x3B, 0, 8, int(round(rng.normal(35, 4))))
    # KsTa, TGC (11.1.8, 11.1.16); KsTo for the four ranges and corner temperatures (11.1.9/10)
    _put(ee, 0x3C, 8, 8, int(round(rng.normal(-20, 3))))
    _put(ee, 0x3C, 0, 8, int(round(tgc * 32)))
    for index, shift in ((0x3D, 0), (0x3D, 8), (0x3E, 0), (0x3E, 8)):
        _put(ee, index, shift, 8, int(np.clip(round(rng.normal(-105, 20)), -128, -40)))
    ee[0x3F] = (2 << 12) | (10 << 8) | (15 << 4) | 11     # step 20, CT3 300, CT4 500, scale 19
    # Pixel words (Table 10): offset 15..10, alpha 9..4, Kta 3..1, outlier bit 0
    pix_kta = rng.integers(-4, 4, PIXELS)
    for i in range(PIXELS):
        w = 0
        w = (int(pix_off[i]) & 0x3F) << 10 | (int(pix_alpha[i]) & 0x3F) << 4 | (int(pix_kta[i]) & 7) << 1
        ee[0x40 + i] = w or 0x0002        # an all-zero word would mean "broken"
    for p in outliers:
        ee[0x40 + p] |= 1
    for p in broken:
        ee[0x40 + p] = 0
    return ee
