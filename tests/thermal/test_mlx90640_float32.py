"""ESP32 floats are single precision: re-run the driver's own calculation steps in float32.

The Calibration's scalars, tuples and per-pixel arrays are converted to numpy.float32, then the
very same `subpage_to` / `vdd_of` / `ta_of` code runs; NumPy 2 keeps float32 through every
operation with Python numbers (NEP 50), as the ESP32 port does. The result must stay within
0.05 degC of the maker's golden vector.
"""
from __future__ import annotations

import numpy as np

from kiosk import mlx90640 as m
from tests.thermal.melexis_example import load, ram_bytes

FLOAT_FIELDS = ("kvdd", "vdd25", "kv_ptat", "kt_ptat", "vptat25", "alpha_ptat", "gain_ee", "ks_ta", "tgc",
                "cp_kv", "cp_kta")
TUPLE_FIELDS = ("ct", "ks_to", "alpha_corr", "cp_alpha", "cp_offset", "il_chess")
ARRAY_FIELDS = ("offset", "alpha", "kta", "kv")


def as_float32(cal: m.Calibration) -> m.Calibration:
    c32 = m.Calibration()
    vars(c32).update(vars(cal))
    for name in FLOAT_FIELDS:
        setattr(c32, name, np.float32(getattr(cal, name)))
    for name in TUPLE_FIELDS:
        setattr(c32, name, tuple(np.float32(v) for v in getattr(cal, name)))
    for name in ARRAY_FIELDS:
        setattr(c32, name, np.asarray(getattr(cal, name), dtype=np.float32))
    return c32


def run(cal: m.Calibration, out) -> list[float]:
    ex = load()
    tas = []
    for frame in ex.frames:
        ta, _ = m.subpage_to(cal, ram_bytes(frame), frame[832], frame[833], out, emissivity=1.0)
        tas.append(ta)
    return tas


def test_float32_stays_within_0_05_degC_of_the_golden_vector():
    ex = load()
    cal = m.extract(ex.eeprom)
    out32 = np.zeros(768, dtype=np.float32)
    with np.errstate(all="raise"):
        tas32 = run(as_float32(cal), out32)
    assert all(isinstance(t, np.float32) for t in tas32), "calculation left float32"
    out64 = [0.0] * 768
    run(cal, out64)
    err_golden = np.max(np.abs(out32.astype(np.float64) - np.array(ex.to_full)))
    err_double = np.max(np.abs(out32.astype(np.float64) - np.array(out64)))
    print(f"float32 vs golden: {err_golden:.5f} degC, vs double: {err_double:.6f} degC")
    assert err_golden <= 0.05
    assert err_double <= 0.05
