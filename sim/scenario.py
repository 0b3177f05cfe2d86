"""Scenario files: a checkpoint day described in TOML, validated once, declaratively.

    python -m sim run --scenario sim/scenarios/winter_highway_exit.toml [--accelerated|--realtime]

A file has these tables (every key, its type, default and range are in SCHEMA below; see the
shipped examples in sim/scenarios/ and README "Simulator scenarios"):

  [scenario]        name, seed, local date/timezone, the simulated window (start, duration)
  [[checkpoints]]   id (or an id template with `count` for a district), hours of operation,
    [[checkpoints.lanes]]  id, directions ("in"/"out"), kiosks per direction, board profile,
                    sensor path ("frame" fast path or "register" level), rate_scale,
      [checkpoints.lanes.config]  firmware config overrides (checked by kiosk.config)
  [arrivals]        people per hour per kiosk: `rate_per_h`, or a piecewise `table` of
                    ["HH:MM", rate] rows (the rate holds from that time on)
  [population]      core temperature (normal), fever share and range, vehicle share, people
                    without a code, pass mix green/yellow/red/expired/forged, distance, dwell
  [weather]         air (["HH:MM", degC] rows, interpolated), wind, sun on the lane, background
  [[faults]]        at ("HH:MM" or "+90s" from the start), kind, kiosk ("L1-in", "cp/L1-in",
                    "*" = all), for_s; kinds: wifi_drop, broker_restart, sensor_unplugged,
                    scanner_garbage, power_cut

Errors name the key and its line: "winter.toml:14: population.fever_share: 1.5 is outside 0..1".
tomllib reports no positions for values, so the line is found in the source text by walking its
table headers (`locate`).
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk import config as kiosk_config
from sim.board.board import BOARDS

FAULT_KINDS = ("wifi_drop", "broker_restart", "sensor_unplugged", "scanner_garbage", "power_cut")
PASS_KINDS = ("green", "yellow", "red", "expired", "forged")
_REQUIRED = object()
_TIME = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h)$")
_ID = re.compile(r"^[A-Za-z0-9-][A-Za-z0-9_-]{0,31}$")


class ScenarioError(ValueError):
    """A scenario that cannot be run; the message names the file, line and key."""

    def __init__(self, path: str, line: int | None, key: str, message: str) -> None:
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}" if key else f"{where}: {message}")
        self.path, self.line, self.key = path, line, key


# ---- the schema -------------------------------------------------------------------------------

@dataclass(frozen=True)
class F:
    """One key: its kind, default (_REQUIRED if none), bounds or choices."""
    kind: str  # str, int, num, bool, time, duration, id, shares, rows, list_str, table
    default: Any = _REQUIRED
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None


SCHEMA: dict[str, dict[str, F]] = {
    "scenario": {
        "name": F("str"), "description": F("str", ""), "seed": F("int", 1, 0, 2**31),
        "date": F("str", "2026-01-15"), "timezone": F("str", "Asia/Shanghai"),
        "start": F("time", "08:00"), "duration": F("duration", 600.0, 1, 7 * 86400),
        "verdict_timeout_ms": F("int", 0, 0, 60000),
    },
    "checkpoints": {
        "id": F("str"), "count": F("int", 1, 1, 5000), "hours": F("list_str", ["00:00", "24:00"]),
        "lanes": F("table"),
    },
    "lanes": {
        "id": F("id"), "directions": F("list_str", ["in", "out"]), "kiosks_per_direction": F("int", 1, 1, 16),
        "board": F("str", "esp32-devkitc-v4"), "sensor": F("str", "frame", choices=("frame", "register")),
        "runtime": F("str", "cpython", choices=("cpython", "micropython")), "rate_scale": F("num", 1.0, 0, 100),
        "config": F("table", {}),
    },
    "arrivals": {"rate_per_h": F("num", 240.0, 0, 36000), "table": F("rows", [])},
    "population": {
        "core_mean_c": F("num", 36.8, 35.0, 38.0), "core_sd_c": F("num", 0.25, 0.0, 1.0),
        "fever_share": F("num", 0.05, 0.0, 1.0), "fever_min_c": F("num", 37.8, 37.3, 42.0),
        "fever_max_c": F("num", 39.5, 37.3, 42.0), "vehicle_share": F("num", 0.1, 0.0, 1.0),
        "no_code_share": F("num", 0.1, 0.0, 1.0), "passes": F("shares", {"green": 1.0}),
        "distance_min_m": F("num", 0.45, 0.3, 1.0), "distance_max_m": F("num", 0.8, 0.3, 1.0),
        "dwell_min_s": F("num", 2.0, 1.0, 30.0), "dwell_max_s": F("num", 3.0, 1.0, 30.0),
    },
    "weather": {
        "air_c": F("rows", [["00:00", 20.0]]), "wind_m_s": F("rows", [["00:00", 0.0]]),
        "sun": F("rows", [["00:00", False]]), "background": F("str", "wall", choices=("wall", "sky", "engine")),
    },
    "faults": {
        "at": F("str"), "kind": F("str", choices=FAULT_KINDS), "kiosk": F("str", "*"),
        "for_s": F("num", 30.0, 0, 86400), "bytes": F("int", 64, 1, 4096),
    },
}
TOP = ("scenario", "checkpoints", "arrivals", "population", "weather", "faults")


# ---- the result -------------------------------------------------------------------------------

@dataclass(frozen=True)
class KioskSpec:
    checkpoint: str
    kiosk: str
    lane: str
    direction: str
    board: str
    sensor: str
    runtime: str
    rate_scale: float
    config: dict[str, Any]


@dataclass(frozen=True)
class FaultSpec:
    at_s: float  # seconds after the start of the window
    kind: str
    kiosks: tuple[tuple[str, str], ...]  # (checkpoint, kiosk); empty for broker_restart
    for_s: float
    n_bytes: int
    line: int | None


@dataclass
class Scenario:
    path: str
    name: str
    description: str
    seed: int
    date: str
    timezone: str
    start_min: int
    duration_s: float
    verdict_timeout_ms: int
    hours: dict[str, tuple[int, int]]  # checkpoint -> open, close minutes of the local day
    kiosks: list[KioskSpec]
    arrivals: list[tuple[int, float]]  # (minute of the day, rate per hour per kiosk), sorted
    population: dict[str, Any]
    weather: dict[str, Any]
    faults: list[FaultSpec]
    raw: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def checkpoints(self) -> list[str]:
        return list(self.hours)

    def minute_of_day(self, elapsed_s: float) -> float:
        return self.start_min + elapsed_s / 60

    def rate_at(self, elapsed_s: float) -> float:
        m = self.minute_of_day(elapsed_s) % 1440
        rate = self.arrivals[0][1]
        for at, r in self.arrivals:
            if at <= m:
                rate = r
        return rate

    def is_open(self, checkpoint: str, elapsed_s: float) -> bool:
        m = self.minute_of_day(elapsed_s) % 1440
        lo, hi = self.hours[checkpoint]
        return lo <= m < hi if lo <= hi else (m >= lo or m < hi)

    def weather_at(self, elapsed_s: float) -> tuple[float, float, bool]:
        """(air degC, wind m/s, sun on the lane) at that moment."""
        m = self.minute_of_day(elapsed_s) % 1440
        return (_interpolate(self.weather["air_c"], m), _interpolate(self.weather["wind_m_s"], m),
                bool(_step(self.weather["sun"], m)))


def _interpolate(rows: list[tuple[int, Any]], m: float) -> float:
    if m <= rows[0][0]:
        return float(rows[0][1])
    for (a, va), (b, vb) in zip(rows, rows[1:]):
        if a <= m <= b:
            return float(va) + (float(vb) - float(va)) * (m - a) / max(1, b - a)
    return float(rows[-1][1])


def _step(rows: list[tuple[int, Any]], m: float) -> Any:
    value = rows[0][1]
    for at, v in rows:
        if at <= m:
            value = v
    return value


# ---- finding a key's line -----------------------------------------------------------------------

Path_ = tuple[Any, ...]
_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\" -]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*=")


def locate(text: str) -> dict[Path_, int]:
    """Map key paths (("faults", 2, "kind"), ("population", "fever_share")) to 1-based lines."""
    lines: dict[Path_, int] = {}
    counts: dict[Path_, int] = {}
    current: Path_ = ()
    for n, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            parts = [p.strip().strip('"') for p in m.group(2).split(".")]
            resolved: list[Any] = []
            for i, part in enumerate(parts):
                resolved.append(part)
                last = i == len(parts) - 1
                if last and m.group(1) == "[[":
                    idx = counts.get(tuple(resolved), 0)
                    counts[tuple(resolved)] = idx + 1
                    resolved.append(idx)
                elif tuple(resolved) in counts:
                    resolved.append(counts[tuple(resolved)] - 1)
            current = tuple(resolved)
            lines.setdefault(current, n)
            continue
        k = _KEY.match(line)
        if k:
            lines.setdefault(current + (k.group(1).strip('"'),), n)
    return lines


class _Checker:
    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = locate(text)

    def line(self, key: Path_) -> int | None:
        key = tuple(key)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return None

    def fail(self, key: Path_, message: str) -> ScenarioError:
        dotted = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in key).replace(".[", "[")
        return ScenarioError(self.path, self.line(key), dotted, message)

    def table(self, data: Any, schema: dict[str, F], where: Path_) -> dict[str, Any]:
        """Defaults + data, every value checked against its F; unknown keys are errors."""
        if not isinstance(data, dict):
            raise self.fail(where, "must be a table")
        for key in data:
            if key not in schema:
                raise self.fail(where + (key,), f"unknown key (known: {', '.join(schema)})")
        out: dict[str, Any] = {}
        for key, spec in schema.items():
            if key not in data:
                if spec.default is _REQUIRED:
                    raise self.fail(where + (key,), "required")
                out[key] = self.value(spec.default, spec, where + (key,))  # defaults in the same units
                continue
            out[key] = self.value(data[key], spec, where + (key,))
        return out

    def value(self, v: Any, spec: F, key: Path_) -> Any:
        kind = spec.kind
        if kind == "str" or kind == "id":
            if not isinstance(v, str):
                raise self.fail(key, f"must be a string, not {type(v).__name__}")
            if kind == "id" and not _ID.match(v):
                raise self.fail(key, f"{v!r} is not an id ([A-Za-z0-9_-]{{1,32}}, not starting with _)")
            if spec.choices and v not in spec.choices:
                raise self.fail(key, f"{v!r} is not one of {', '.join(spec.choices)}")
            return v
        if kind == "bool":
            if not isinstance(v, bool):
                raise self.fail(key, "must be true or false")
            return v
        if kind in ("int", "num"):
            ok = isinstance(v, int) if kind == "int" else isinstance(v, (int, float))
            if not ok or isinstance(v, bool):
                raise self.fail(key, f"must be {'an integer' if kind == 'int' else 'a number'}, not {v!r}")
            self.bounds(v, spec, key)
            return v if kind == "int" else float(v)
        if kind == "time":
            return self.time(v, key)
        if kind == "duration":
            seconds = self.duration(v, key)
            self.bounds(seconds, spec, key)
            return seconds
        if kind == "list_str":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise self.fail(key, "must be a list of strings")
            return list(v)
        if kind == "table":
            if not isinstance(v, (dict, list)):
                raise self.fail(key, "must be a table")
            return v
        if kind == "shares":
            if not isinstance(v, dict):
                raise self.fail(key, "must be a table of shares, e.g. { green = 0.9, red = 0.1 }")
            for name, share in v.items():
                if name not in PASS_KINDS:
                    raise self.fail(key + (name,), f"unknown pass kind (known: {', '.join(PASS_KINDS)})")
                if not isinstance(share, (int, float)) or isinstance(share, bool) or not 0 <= share <= 1:
                    raise self.fail(key + (name,), f"{share!r} is not a share in 0..1")
            total = sum(v.values())
            if abs(total - 1.0) > 1e-6:
                raise self.fail(key, f"shares add up to {total:g}, not 1")
            return {k: float(x) for k, x in v.items()}
        if kind == "rows":
            if not isinstance(v, list) or not all(isinstance(r, list) and len(r) == 2 for r in v):
                raise self.fail(key, 'must be a list of ["HH:MM", value] rows')
            rows = [(self.time(r[0], key), r[1]) for r in v]
            if [r[0] for r in rows] != sorted(r[0] for r in rows):
                raise self.fail(key, "rows must be in time order")
            return rows
        raise AssertionError(kind)

    def bounds(self, v: float, spec: F, key: Path_) -> None:
        if (spec.lo is not None and v < spec.lo) or (spec.hi is not None and v > spec.hi):
            raise self.fail(key, f"{v!r} is outside {spec.lo:g}..{spec.hi:g}")

    def time(self, v: Any, key: Path_) -> int:
        m = _TIME.match(v) if isinstance(v, str) else None
        if not m or (m.group(1) == "24" and m.group(2) != "00"):
            raise self.fail(key, f"{v!r} is not a local time \"HH:MM\"")
        return int(m.group(1)) * 60 + int(m.group(2))

    def duration(self, v: Any, key: Path_) -> float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        m = _DURATION.match(v) if isinstance(v, str) else None
        if not m:
            raise self.fail(key, f"{v!r} is not a duration (seconds, or \"90s\", \"20m\", \"2h\")")
        return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def load(path: str | Path) -> Scenario:
    text = Path(path).read_text()
    return parse(text, str(path))


def parse(text: str, path: str = "<scenario>") -> Scenario:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        m = re.search(r"line (\d+)", str(err))
        raise ScenarioError(path, int(m.group(1)) if m else None, "", f"not valid TOML: {err}") from err
    c = _Checker(path, text)
    for key in raw:
        if key not in TOP:
            raise c.fail((key,), f"unknown table (known: {', '.join(TOP)})")
    sc = c.table(raw.get("scenario", {}), SCHEMA["scenario"], ("scenario",))
    arr = c.table(raw.get("arrivals", {}), SCHEMA["arrivals"], ("arrivals",))
    pop = c.table(raw.get("population", {}), SCHEMA["population"], ("population",))
    wea = c.table(raw.get("weather", {}), SCHEMA["weather"], ("weather",))
    kiosks, hours = _checkpoints(c, raw.get("checkpoints"))
    # ---- cross-field pass ----
    for lo, hi, what in (("fever_min_c", "fever_max_c", "fever range"), ("distance_min_m", "distance_max_m", "distance"),
                         ("dwell_min_s", "dwell_max_s", "dwell")):
        if pop[lo] > pop[hi]:
            raise c.fail(("population", lo), f"{what}: {lo} {pop[lo]:g} is above {hi} {pop[hi]:g}")
    for key, lo, hi, kind in (("air_c", -15.0, 40.0, (int, float)), ("wind_m_s", 0.0, 30.0, (int, float)),
                              ("sun", None, None, bool)):
        for value in (r[1] for r in wea[key]):
            if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
                raise c.fail(("weather", key), f"{value!r}: wrong type of value")
            if lo is not None and not lo <= value <= hi:  # type: ignore[operator]
                raise c.fail(("weather", key), f"{value!r} is outside {lo:g}..{hi:g}")
    table = [(m, float(r)) for m, r in arr["table"]] if arr["table"] else [(0, arr["rate_per_h"])]
    for _, r in arr["table"]:
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r <= 36000:
            raise c.fail(("arrivals", "table"), f"{r!r} is not a rate in 0..36000 per hour")
    known = {(k.checkpoint, k.kiosk) for k in kiosks}
    faults = []
    raw_faults = raw.get("faults", [])
    if not isinstance(raw_faults, list):
        raise c.fail(("faults",), "must be an array of tables ([[faults]])")
    for i, f in enumerate(raw_faults):
        fd = c.table(f, SCHEMA["faults"], ("faults", i))
        at = fd["at"]
        if at.startswith("+"):
            at_s = c.duration(at[1:], ("faults", i, "at"))
        else:
            at_s = ((c.time(at, ("faults", i, "at")) - sc["start"]) % 1440) * 60.0
        if at_s > sc["duration"]:
            raise c.fail(("faults", i, "at"), f"{at!r} is after the end of the simulated window")
        targets: list[tuple[str, str]] = []
        if fd["kind"] != "broker_restart":
            want = fd["kiosk"]
            if want == "*":
                targets = sorted(known)
            else:
                cp, _, kid = want.rpartition("/")
                targets = [k for k in sorted(known) if k[1] == kid and (not cp or k[0] == cp)]
                if not targets:
                    raise c.fail(("faults", i, "kiosk"), f"no kiosk {want!r} in this scenario")
        faults.append(FaultSpec(at_s, fd["kind"], tuple(targets), fd["for_s"], fd["bytes"], c.line(("faults", i))))
    faults.sort(key=lambda f: f.at_s)
    return Scenario(path, sc["name"], sc["description"], sc["seed"], sc["date"], sc["timezone"], sc["start"],
                    sc["duration"], sc["verdict_timeout_ms"], hours, kiosks, sorted(table), pop, wea, faults, raw)


def _checkpoints(c: _Checker, data: Any) -> tuple[list[KioskSpec], dict[str, tuple[int, int]]]:
    if not isinstance(data, list) or not data:
        raise c.fail(("checkpoints",), "at least one [[checkpoints]] is required")
    boards = {p.stem for p in BOARDS.glob("*.json")}
    kiosks: list[KioskSpec] = []
    hours: dict[str, tuple[int, int]] = {}
    for i, cp in enumerate(data):
        cd = c.table(cp, SCHEMA["checkpoints"], ("checkpoints", i))
        if len(cd["hours"]) != 2:
            raise c.fail(("checkpoints", i, "hours"), 'must be ["HH:MM", "HH:MM"] (open, close)')
        span = (c.time(cd["hours"][0], ("checkpoints", i, "hours")), c.time(cd["hours"][1], ("checkpoints", i, "hours")))
        lanes = cd["lanes"]
        if not isinstance(lanes, list) or not lanes:
            raise c.fail(("checkpoints", i, "lanes"), "at least one [[checkpoints.lanes]] is required")
        ids = _expand_id(c, cd["id"], cd["count"], ("checkpoints", i, "id"))
        for cp_id in ids:
            if cp_id in hours:
                raise c.fail(("checkpoints", i, "id"), f"checkpoint {cp_id!r} appears twice")
            hours[cp_id] = span
        seen: set[str] = set()
        for j, lane in enumerate(lanes):
            where = ("checkpoints", i, "lanes", j)
            ld = c.table(lane, SCHEMA["lanes"], where)
            if ld["board"] not in boards:
                raise c.fail(where + ("board",), f"unknown board profile {ld['board']!r} (known: {', '.join(sorted(boards))})")
            for d in ld["directions"]:
                if d not in ("in", "out"):
                    raise c.fail(where + ("directions",), f"{d!r} is not in or out")
            overrides = dict(ld["config"])
            _, errors = kiosk_config.validate(dict(overrides, checkpoint="cp", kiosk="k", lane=ld["id"], dir="in",
                                                   broker_host="127.0.0.1", broker_port=1883))
            if errors:
                bad = errors[0].split(":")[0]
                raise c.fail(where + ("config", bad), "; ".join(errors))
            for d in ld["directions"]:
                for n in range(ld["kiosks_per_direction"]):
                    kid = f"{ld['id']}-{d}" + (str(n + 1) if ld["kiosks_per_direction"] > 1 else "")
                    if kid in seen:
                        raise c.fail(where + ("id",), f"kiosk {kid!r} appears twice in this checkpoint")
                    seen.add(kid)
                    for cp_id in ids:
                        kiosks.append(KioskSpec(cp_id, kid, ld["id"], d, ld["board"], ld["sensor"], ld["runtime"],
                                                ld["rate_scale"], overrides))
    return kiosks, hours


def _expand_id(c: _Checker, template: str, count: int, key: Path_) -> list[str]:
    """"cp-{n:03d}" with count = 453 -> cp-001 .. cp-453 (a district); a plain id with count 1."""
    ids = [template.format(n=n + 1) for n in range(count)] if "{" in template else [template]
    if len(ids) != count or len(set(ids)) != count:
        raise c.fail(key, "with count > 1 the id must be a template like \"cp-{n:03d}\"")
    for cp_id in ids:
        if not _ID.match(cp_id):
            raise c.fail(key, f"{cp_id!r} is not an id ([A-Za-z0-9_-]{{1,32}}, not starting with _)")
    return ids


def describe(sc: Scenario) -> str:
    h, m = divmod(sc.start_min, 60)
    lanes = len({(k.checkpoint, k.lane) for k in sc.kiosks})
    return (f"scenario {sc.name}: {len(sc.hours)} checkpoint(s), {lanes} lane(s), {len(sc.kiosks)} kiosk(s), "
            f"{sc.date} {h:02d}:{m:02d} {sc.timezone} for {sc.duration_s:g} s, {len(sc.faults)} fault(s), seed {sc.seed}")


