"""Decision rules, the state machine and pairing, on hand-made readings (virtual clock in ms)."""
import pytest

from kiosk import screening, thermal
from kiosk.screening import decide, settings, DEFAULTS, BOUNDS


def reading(core=36.8, people=1, stable=True, in_range=True, valid=True, reason=""):
    rd = thermal.Reading()
    rd.people, rd.valid, rd.stable, rd.in_range, rd.reason = people, valid, stable, in_range, reason
    if valid:
        rd.core_c, rd.skin_c, rd.distance_m, rd.ambient_c = core, core - 1.0, 0.6, 22.0
    return rd


def test_decision_rules():
    assert decide(37.3, True, True) == "fever"
    assert decide(38.5, True, False) == "fever"
    assert decide(37.2, True, True) == "recheck"           # in the band below the threshold
    assert decide(36.8, True, True) == "pass"
    assert decide(38.5, False, True) == "recheck"          # unstable
    assert decide(None, True, True) == "invalid"
    assert decide(31.0, True, True) == "invalid"           # a misread face, not a person
    assert decide(float("nan"), True, True) == "invalid"


def test_out_of_range_is_never_pass_near_the_threshold():
    band = DEFAULTS["out_of_range_band_c"]
    for core in (36.85, 37.0, 37.2):
        assert DEFAULTS["fever_c"] - core <= band
        assert decide(core, True, False) == "recheck"
    assert decide(DEFAULTS["fever_c"] - band - 0.2, True, False) == "pass"


def test_thresholds_are_configurable_within_bounds():
    cfg = settings({"fever_c": 37.5})
    assert decide(37.4, True, True, cfg) == "recheck" and decide(37.5, True, True, cfg) == "fever"
    assert set(DEFAULTS) == set(BOUNDS)
    for k, (lo, hi) in BOUNDS.items():
        assert lo <= DEFAULTS[k] <= hi
    for bad in ({"fever_c": 39.5}, {"fever_c": float("nan")}, {"nope": 1}, {"fever_c": "37"},
                {"fever_c": True}):
        with pytest.raises(ValueError):
            settings(bad)


def test_state_machine_idle_measuring_decision_idle():
    s = screening.Screener()
    assert s.frame(reading(people=0, valid=False, reason="no_person"), 0) is None and s.state == "idle"
    assert s.frame(reading(stable=False), 125) is None and s.state == "measuring"
    assert s.frame(reading(core=36.8), 250) == "pass" and s.state == "decision"
    assert s.last["elapsed_ms"] == 125
    assert s.frame(reading(core=36.8), 375) is None and s.state == "decision"   # same person: no repeat
    t = 500
    while s.state != "idle":
        s.frame(reading(people=0, valid=False, reason="no_person"), t)
        t += 125
    assert t - 500 <= DEFAULTS["leave_ms"] + 250


def test_unstable_until_timeout_is_recheck_and_no_face_is_invalid():
    s = screening.Screener()
    t = 0
    r = None
    while r is None:
        r = s.frame(reading(core=36.5, stable=False), t)
        t += 125
    assert r == "recheck" and t - 125 >= DEFAULTS["measure_timeout_ms"]
    s = screening.Screener()
    t = 0
    r = None
    while r is None:
        r = s.frame(reading(valid=False, reason="no_face"), t)
        t += 125
    assert r == "invalid"


def test_warming_never_measures():
    s = screening.Screener()
    assert s.frame(reading(valid=False, reason="warming"), 0) is None and s.state == "idle"


def _decide_one(s, t, core=36.8, people=1):
    s.frame(reading(core=core, people=people, stable=False), t)
    return s.frame(reading(core=core, people=people), t + 125)


def test_one_person_code_and_temperature_pair():
    s = screening.Screener()
    s.frame(reading(people=0, valid=False, reason="no_person"), 0)
    s.code("QR-1", 100)
    assert _decide_one(s, 250) == "pass"
    recs = s.records(400)
    assert len(recs) == 1 and recs[0]["paired"] and recs[0]["code"] == "QR-1"
    assert recs[0]["result"] == "pass"


def test_code_after_temperature_pairs_within_window():
    s = screening.Screener({"pair_window_ms": 3000})
    _decide_one(s, 0, core=38.0)
    assert s.records(500) == []                   # waiting for a code
    s.code("QR-2", 2000)
    (rec,) = s.records(2001)
    assert rec["paired"] and rec["result"] == "fever"


def test_two_people_in_view_nothing_pairs_and_result_is_recheck():
    s = screening.Screener()
    s.frame(reading(people=2, stable=False), 0)       # a second person in view during measuring
    s.frame(reading(people=1, stable=False), 125)
    assert s.frame(reading(core=36.7), 250) == "pass"
    s.code("QR-3", 400)
    recs = s.records(500)
    kinds = sorted((r["type"], r["paired"]) for r in recs)
    assert kinds == [("scan", False), ("screening", False)]
    temp = [r for r in recs if r["type"] == "screening"][0]
    assert temp["result"] == "recheck" and temp["measured"] == "pass" and temp["code"] is None


def test_two_codes_in_the_window_are_ambiguous():
    s = screening.Screener()
    s.code("A", 0)
    s.code("B", 300)
    assert _decide_one(s, 500) == "pass"
    recs = s.records(10_000)
    assert [r["type"] for r in recs].count("scan") == 2 or not any(r["paired"] and r["code"] == "A" for r in recs)


def test_stale_code_and_lonely_temperature_stay_unpaired():
    s = screening.Screener({"pair_window_ms": 1000})
    s.code("OLD", 0)
    assert _decide_one(s, 5000) == "pass"
    recs = s.records(5200)
    assert recs == [{"type": "scan", "code": "OLD", "paired": False, "t_ms": 0}]
    recs = s.records(7000)
    assert len(recs) == 1 and recs[0]["type"] == "screening" and not recs[0]["paired"]
    assert recs[0]["result"] == "pass"
