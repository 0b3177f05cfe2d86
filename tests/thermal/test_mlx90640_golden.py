"""Golden vector: the driver reproduces the sensor maker's worked example.

Every parameter of Parameters_extract.csv and every pixel of To_calculation.csv (emissivity 1,
reflected temperature Ta - 8), under CPython and under the real MicroPython 1.29 unix port.
"""
from __future__ import annotations

import math


from kiosk import mlx90640 as m
from tests.micropython_runner import run_micropython
from tests.thermal.melexis_example import load, printed_tolerance, ram_bytes

# Sheet name -> how to get the same quantity from a Calibration.
PARAMS = {
    "kVdd": lambda c: [c.kvdd], "vdd25": lambda c: [c.vdd25], "KvPTAT": lambda c: [c.kv_ptat],
    "KtPTAT": lambda c: [c.kt_ptat], "vPTAT25": lambda c: [c.vptat25],
    "alphaPTAT": lambda c: [c.alpha_ptat], "gainEE": lambda c: [c.gain_ee], "tgc": lambda c: [c.tgc],
    "cpKv": lambda c: [c.cp_kv], "cpKta": lambda c: [c.cp_kta],
    "resolutionEE": lambda c: [c.resolution_ee],
    # The reference code stores the calibration pattern as 0x80 for chess (control bit 12 >> 5).
    "calibrationModeEE": lambda c: [128 if c.chess_calibrated else 0],
    "KsTa": lambda c: [c.ks_ta], "ksTo": lambda c: list(c.ks_to), "ct": lambda c: list(c.ct),
    "alpha": lambda c: list(c.alpha), "offset": lambda c: list(c.offset), "kta": lambda c: list(c.kta),
    "kv": lambda c: list(c.kv), "cpAlpha": lambda c: list(c.cp_alpha),
    "cpOffset": lambda c: list(c.cp_offset), "ilChessC": lambda c: list(c.il_chess),
    # The sheet lists 5 slots, 0xFFFF = empty.
    "brokenPixels": lambda c: (list(c.broken) + [65535] * 5)[:5],
    "outlierPixels": lambda c: (list(c.outliers) + [65535] * 5)[:5],
}


def compare_params(sheet: dict[str, list[str]], ours: dict[str, list[float]]) -> list[str]:
    problems = []
    assert set(sheet) == set(PARAMS), f"unmapped sheet parameters: {set(sheet) ^ set(PARAMS)}"
    for name, texts in sheet.items():
        got = ours[name]
        if len(got) < len(texts):
            problems.append(f"{name}: {len(got)} values, sheet has {len(texts)}")
            continue
        for k, text in enumerate(texts):
            want = float(text)
            # alpha is stored as single precision (array 'f'): allow its rounding, 2**-24 relative.
            tol = printed_tolerance(text) + abs(want) * 2.0 ** -23
            if not abs(got[k] - want) <= tol:
                problems.append(f"{name}[{k}]: {got[k]!r} vs sheet {text}")
    return problems


def compare_to(full: list[float], sub0: list[float], ex) -> tuple[float, list[str]]:
    problems = []
    worst = 0.0
    for i in range(768):
        worst = max(worst, abs(full[i] - ex.to_full[i]))
        if not abs(full[i] - ex.to_full[i]) <= 0.01:
            problems.append(f"pixel {i}: {full[i]:.4f} vs {ex.to_full[i]}")
        if ex.to_subpage0[i] != 0.0 and not abs(sub0[i] - ex.to_subpage0[i]) <= 0.01:
            problems.append(f"subpage 0 pixel {i}: {sub0[i]:.4f} vs {ex.to_subpage0[i]}")
    return worst, problems


def cpython_run():
    ex = load()
    cal = m.extract(ex.eeprom)
    out = [0.0] * 768
    sub0 = None
    for frame in ex.frames:
        m.subpage_to(cal, ram_bytes(frame), frame[832], frame[833], out, emissivity=1.0)
        if sub0 is None:
            sub0 = list(out)
    return cal, out, sub0


def test_every_parameter_matches_the_sheet():
    ex = load()
    cal = m.extract(ex.eeprom)
    ours = {name: [float(v) for v in fn(cal)] for name, fn in PARAMS.items()}
    assert compare_params(ex.params, ours) == []


def test_every_pixel_temperature_matches_within_0_01_degC():
    ex = load()
    _, out, sub0 = cpython_run()
    worst, problems = compare_to(out, sub0, ex)
    assert problems == []
    assert worst <= 0.01


def test_ta_and_vdd_are_plausible_for_the_example():
    ex = load()
    cal = m.extract(ex.eeprom)
    raw = ram_bytes(ex.frames[0])
    vdd = m.vdd_of(cal, raw, ex.frames[0][832])
    ta = m.ta_of(cal, raw, vdd)
    assert 3.2 < vdd < 3.4 and 20 < ta < 45


def test_roi_computes_only_the_pixels_asked_for():
    ex = load()
    cal = m.extract(ex.eeprom)
    roi = [0, 1, 32, 33, 400, 401, 767]
    out = [math.inf] * 768
    for frame in ex.frames:
        m.subpage_to(cal, ram_bytes(frame), frame[832], frame[833], out, roi, emissivity=1.0)
    for i in range(768):
        if i in roi:
            assert abs(out[i] - ex.to_full[i]) <= 0.01
        else:
            assert out[i] == math.inf


MICROPYTHON_SCRIPT = """
from kiosk import mlx90640 as m
from array import array
import time
ee = array('H', EEPROM)
cal = m.extract(ee)
def show(name, values):
    print(name, ' '.join([repr(float(v)) for v in values]))
show('kVdd', [cal.kvdd]); show('vdd25', [cal.vdd25]); show('KvPTAT', [cal.kv_ptat])
show('KtPTAT', [cal.kt_ptat]); show('vPTAT25', [cal.vptat25]); show('alphaPTAT', [cal.alpha_ptat])
show('gainEE', [cal.gain_ee]); show('tgc', [cal.tgc]); show('cpKv', [cal.cp_kv]); show('cpKta', [cal.cp_kta])
show('resolutionEE', [cal.resolution_ee]); show('calibrationModeEE', [128 if cal.chess_calibrated else 0])
show('KsTa', [cal.ks_ta]); show('ksTo', cal.ks_to); show('ct', cal.ct); show('alpha', cal.alpha)
show('offset', cal.offset); show('kta', cal.kta); show('kv', cal.kv); show('cpAlpha', cal.cp_alpha)
show('cpOffset', cal.cp_offset); show('ilChessC', cal.il_chess)
show('brokenPixels', (list(cal.broken) + [65535] * 5)[:5])
show('outlierPixels', (list(cal.outliers) + [65535] * 5)[:5])
out = array('f', [0.0] * 768)
sub0 = None
for words in FRAMES:
    raw = bytearray(1664)
    for i in range(832):
        raw[2 * i] = words[i] >> 8
        raw[2 * i + 1] = words[i] & 0xFF
    t0 = time.ticks_us()
    m.subpage_to(cal, raw, words[832], words[833], out, None, 1.0)
    dt = time.ticks_diff(time.ticks_us(), t0)
    if sub0 is None:
        sub0 = array('f', out)
show('to_sub0', sub0)
show('to_full', out)
print('us_per_subpage', dt)
"""


def test_micropython_reproduces_the_golden_vector():
    ex = load()
    script = (MICROPYTHON_SCRIPT.replace("EEPROM", repr(list(ex.eeprom)), 1)
              .replace("FRAMES", repr([list(f) for f in ex.frames]), 1))
    lines = run_micropython(script).splitlines()
    values = {ln.split()[0]: [float(x) for x in ln.split()[1:]] for ln in lines}
    ours = {name: values[name] for name in PARAMS}
    assert compare_params(ex.params, ours) == []
    worst, problems = compare_to(values["to_full"], values["to_sub0"], ex)
    assert problems == []
