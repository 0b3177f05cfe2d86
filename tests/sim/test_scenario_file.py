"""Scenario files: the shipped ones load; a bad file's error names the key and its line."""
from __future__ import annotations

from pathlib import Path

import pytest

from sim import scenario
from sim.scenario import ScenarioError

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "sim" / "scenarios").glob("*.toml"))

GOOD = """\
[scenario]
name = "t"
start = "07:00"
duration = "10m"

[[checkpoints]]
id = "cp-1"
hours = ["06:00", "22:00"]

  [[checkpoints.lanes]]
  id = "L1"

  [[checkpoints.lanes]]
  id = "L2"
  directions = ["in"]
  kiosks_per_direction = 2
  [checkpoints.lanes.config]
  keepalive_s = 20

[arrivals]
table = [["06:00", 100], ["07:30", 600]]

[population]
passes = { green = 0.9, forged = 0.1 }

[weather]
air_c = [["06:00", -10.0], ["08:00", 0.0]]

[[faults]]
at = "+60s"
kind = "wifi_drop"
kiosk = "L2-in2"

[[faults]]
at = "07:05"
kind = "broker_restart"
"""


def test_shipped_scenarios_load() -> None:
    assert {p.stem for p in SCENARIOS} >= {"winter_highway_exit", "summer_residential_gate", "fever_cluster",
                                          "flaky_network_day"}
    for path in SCENARIOS:
        sc = scenario.load(path)
        assert sc.kiosks and sc.duration_s > 0, path


def test_good_file_parses_into_kiosks_rates_weather_and_faults() -> None:
    sc = scenario.parse(GOOD, "good.toml")
    assert [k.kiosk for k in sc.kiosks] == ["L1-in", "L1-out", "L2-in1", "L2-in2"]
    assert sc.kiosks[2].config == {"keepalive_s": 20}
    assert sc.rate_at(0) == 100 and sc.rate_at(31 * 60) == 600
    assert sc.weather_at(0)[0] == pytest.approx(-5.0)  # 07:00, half way from -10 to 0
    assert [(f.kind, f.at_s, f.kiosks) for f in sc.faults] == [("wifi_drop", 60.0, (("cp-1", "L2-in2"),)),
                                                              ("broker_restart", 300.0, ())]
    assert sc.is_open("cp-1", 0) and not sc.is_open("cp-1", 16 * 3600)


def test_district_template_expands() -> None:
    text = GOOD.replace('id = "cp-1"', 'id = "cp-{n:03d}"\ncount = 453').replace('kiosk = "L2-in2"', 'kiosk = "cp-007/L2-in2"')
    sc = scenario.parse(text, "d.toml")
    assert len(sc.hours) == 453 and len(sc.kiosks) == 453 * 4
    assert sc.faults[0].kiosks == (("cp-007", "L2-in2"),)


@pytest.mark.parametrize("old,new,line,key,why", [
    ('duration = "10m"', 'duration = "ten minutes"', 4, "scenario.duration", "not a duration"),
    ('start = "07:00"', 'start = "7am"', 3, "scenario.start", "HH:MM"),
    ('name = "t"', 'name = "t"\ncolour = "red"', 3, "scenario.colour", "unknown key"),
    ('  directions = ["in"]', '  directions = ["up"]', 15, "checkpoints[0].lanes[1].directions", "'up'"),
    ('  keepalive_s = 20', '  keepalive_s = 1', 18, "checkpoints[0].lanes[1].config.keepalive_s", "keepalive_s"),
    ('passes = { green = 0.9, forged = 0.1 }', 'passes = { green = 0.9, forged = 0.2 }', 24, "population.passes",
     "add up to 1.1"),
    ('air_c = [["06:00", -10.0], ["08:00", 0.0]]', 'air_c = [["06:00", -20.0]]', 27, "weather.air_c", "-15..40"),
    ('kind = "wifi_drop"', 'kind = "meteor"', 31, "faults[0].kind", "not one of"),
    ('kiosk = "L2-in2"', 'kiosk = "L9-in"', 32, "faults[0].kiosk", "no kiosk"),
    ('at = "07:05"', 'at = "07:61"', 35, "faults[1].at", "HH:MM"),
    ('  id = "L2"', '  id = "_L2"', 14, "checkpoints[0].lanes[1].id", "not an id"),
    ('[arrivals]', '[arrivalz]', 20, "arrivalz", "unknown table"),
])
def test_bad_value_names_key_and_line(old: str, new: str, line: int, key: str, why: str) -> None:
    assert old in GOOD
    with pytest.raises(ScenarioError) as err:
        scenario.parse(GOOD.replace(old, new, 1), "bad.toml")
    assert err.value.line == line, str(err.value)
    assert err.value.key == key, str(err.value)
    assert why in str(err.value) and str(err.value).startswith(f"bad.toml:{line}: {key}: ")


def test_toml_syntax_error_has_its_line() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario.parse(GOOD.replace('name = "t"', 'name = "t'), "syntax.toml")
    assert err.value.line == 2 and "not valid TOML" in str(err.value)


def test_missing_required_key() -> None:
    with pytest.raises(ScenarioError) as err:
        scenario.parse(GOOD.replace('  id = "L1"\n', ''), "m.toml")
    assert err.value.key == "checkpoints[0].lanes[0].id" and "required" in str(err.value)
