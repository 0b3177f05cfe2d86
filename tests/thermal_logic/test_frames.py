"""Bad frames give an invalid reading with a reason, never an exception."""
import math
from array import array

import pytest
from hypothesis import given, settings, strategies as st

from kiosk import screening, thermal


def frame_of(value=22.0):
    return array("f", [value] * thermal.NPIX)


def busy(value=22.0):
    f = frame_of(value)
    for i in range(0, thermal.NPIX, 7):
        f[i] += 0.3
    return f


@pytest.mark.parametrize("poison,reason", [(math.nan, "nan"), (math.inf, "range"), (-math.inf, "range"),
                                           (500.0, "range"), (-80.0, "range")])
def test_poisoned_pixel(poison, reason):
    f = busy()
    f[100] = poison
    an = thermal.Analyzer(warmup_ms=0)
    rd = an.update(f, 22.0, 30.0, 0)
    assert not rd.valid and rd.reason == reason


def test_flat_frame_is_a_dead_sensor():
    rd = thermal.Analyzer(warmup_ms=0).update(frame_of(25.0), 22.0, 30.0, 0)
    assert not rd.valid and rd.reason == "flat"


@pytest.mark.parametrize("frame", [None, array("f", [22.0] * 767), [22.0] * 769])
def test_wrong_size(frame):
    assert thermal.Analyzer(warmup_ms=0).update(frame, 22.0, 30.0, 0).reason == "size"


@pytest.mark.parametrize("ambient", [None, math.nan, 99.0])
def test_bad_ambient(ambient):
    assert thermal.Analyzer(warmup_ms=0).update(busy(), ambient, 30.0, 0).reason == "ambient"


def test_warm_up_until_ta_is_stable():
    an = thermal.Analyzer(warmup_ms=1000, warmup_tol_c=0.2)
    f = busy()
    reasons = []
    for t, ta in ((0, 30.0), (500, 31.0), (1000, 31.1), (1400, 31.15), (2100, 31.2)):
        reasons.append(an.update(f, 22.0, ta, t).reason)
    assert reasons[:4] == ["warming"] * 4 and reasons[4] == "no_person"


_odd = st.floats(allow_nan=True, allow_infinity=True, width=32)


@settings(max_examples=60, deadline=None)
@given(st.floats(-60, 200, width=32), st.lists(st.tuples(st.integers(0, 767), _odd), max_size=40),
       st.floats(-50, 70), st.booleans())
def test_any_frame_never_crashes(base, patches, ambient, blob):
    values = [base] * 768
    if blob:                                  # a warm blob, so segmentation and hot spot run too
        for r in range(5, 15):
            for c in range(10, 18):
                values[r * 32 + c] = base + 12.0
    for i, v in patches:
        values[i] = v
    an = thermal.Analyzer(warmup_ms=0)
    s = screening.Screener()
    for t in (0, 125, 250):
        rd = an.update(array("f", values), ambient, 30.0, t)
        s.frame(rd, t)
        if rd.valid:
            assert thermal.FACE_MIN_C <= rd.hot_c <= thermal.BODY_MAX_C
        else:
            assert rd.core_c is None


def test_bad_frame_while_measuring_decides_invalid():
    s = screening.Screener()
    rd = thermal.Reading()
    rd.people, rd.valid, rd.core_c, rd.in_range = 1, True, 36.8, True
    assert s.frame(rd, 0) is None and s.state == "measuring"
    bad = thermal.Reading()
    bad.reason = "nan"
    assert s.frame(bad, 125) == "invalid"
