"""Gateway configuration: defaults.toml, then the operator's TOML file, then GATEWAY_* variables.

Validated once, declaratively (`SPEC`), with a final cross-field pass; every bad value is a
ConfigError that names the setting, where it came from and what is allowed.
"""
from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULTS_FILE = Path(__file__).with_name("defaults.toml")


class ConfigError(ValueError):
    def __init__(self, key: str, source: str, message: str) -> None:
        super().__init__(f"{key} (from {source}): {message}")
        self.key = key
        self.source = source


@dataclass(frozen=True)
class Setting:
    kind: type
    lo: float | None = None
    hi: float | None = None
    check: Callable[[Any], str | None] | None = None  # -> error text or None


def _zone(value: Any) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r} (an IANA name such as Asia/Shanghai)"
    return None


def _hhmm(value: Any) -> str | None:
    m = re.fullmatch(r"(\d{2}):(\d{2})", value)
    if not m or int(m.group(1)) > 23 or int(m.group(2)) > 59:
        return f"{value!r} is not a local time HH:MM"
    return None


def _backend(value: Any) -> str | None:
    if value != "sqlite":
        return f"backend {value!r} is not available here (only 'sqlite'; PostgreSQL comes with the scale-out issue)"
    return None


def _writer(value: Any) -> str | None:
    return None if value in ("process", "thread") else f"{value!r}: 'process' or 'thread'"


def _client_id(value: Any) -> str | None:
    return None if 1 <= len(value) <= 64 and re.fullmatch(r"[A-Za-z0-9_.-]+", value) else \
        f"{value!r}: 1-64 characters of [A-Za-z0-9_.-]"


def _nonempty(value: Any) -> str | None:
    return None if value else "may not be empty"


SPEC: dict[str, dict[str, Setting]] = {
    "site": {"timezone": Setting(str, check=_zone)},
    "mqtt": {
        "host": Setting(str, check=_nonempty), "port": Setting(int, 1, 65535),
        "client_id": Setting(str, check=_client_id), "keepalive_s": Setting(int, 5, 3600),
        "session_expiry_s": Setting(int, 60, 4294967295), "receive_maximum": Setting(int, 1, 65535),
        "max_outbound_inflight": Setting(int, 1, 65535),
    },
    "store": {
        "backend": Setting(str, check=_backend), "path": Setting(str, check=_nonempty),
        "batch_max": Setting(int, 1, 65535), "writer": Setting(str, check=_writer),
        "dead_letter_max": Setting(int, 0, 10_000_000), "dead_letter_payload_max": Setting(int, 0, 65536),
    },
    "ingest": {
        "max_future_s": Setting(int, 0, 366 * 86400), "min_ts_ms": Setting(int, 0, 2**53),
        "late_after_s": Setting(int, 1, 366 * 86400),
    },
    "http": {"host": Setting(str, check=_nonempty), "port": Setting(int, 0, 65535)},
    "alerts": {
        "fever_repeat_s": Setting(int, 5, 86400), "offline_after_s": Setting(int, 10, 86400),
        "tick_s": Setting(float, 0.05, 60),
    },
    "commands": {"default_ttl_s": Setting(int, 1, 7 * 86400)},
    "report": {"at": Setting(str, check=_hhmm), "directory": Setting(str, check=_nonempty),
               "gap_min_s": Setting(int, 60, 86400)},
    "summary": {"every_s": Setting(int, 0, 3600)},
    "retention": {"days": Setting(int, 1, 3650), "at": Setting(str, check=_hhmm)},
}


class Config:
    """Validated settings: `cfg.get("mqtt", "port")`, or attribute-style `cfg.mqtt["port"]`."""

    def __init__(self, values: dict[str, dict[str, Any]]) -> None:
        self.values = values

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    def __getattr__(self, section: str) -> dict[str, Any]:
        try:
            return self.values[section]
        except KeyError:
            raise AttributeError(section) from None

    def hhmm(self, section: str) -> tuple[int, int]:
        h, m = self.values[section]["at"].split(":")
        return int(h), int(m)


def _coerce(section: str, key: str, setting: Setting, value: Any, source: str) -> Any:
    name = f"{section}.{key}"
    if setting.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, setting.kind) or isinstance(value, bool):
        raise ConfigError(name, source, f"must be {setting.kind.__name__}, got {type(value).__name__} {value!r}")
    lo, hi = setting.lo, setting.hi
    if isinstance(value, (int, float)) and ((lo is not None and value < lo) or (hi is not None and value > hi)):
        raise ConfigError(name, source, f"{value!r} is outside {setting.lo}..{setting.hi}")
    if setting.check is not None:
        problem = setting.check(value)
        if problem:
            raise ConfigError(name, source, problem)
    return value


def _from_env(setting: Setting, text: str) -> Any:
    if setting.kind is int:
        try:
            return int(text)
        except ValueError:
            return text  # _coerce then says "must be int, got str"
    if setting.kind is float:
        try:
            return float(text)
        except ValueError:
            return text
    return text


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError("--config", str(path), "no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError("--config", str(path), f"not valid TOML: {err}") from None


def _merge(values: dict[str, dict[str, Any]], data: Mapping[str, Any], source: str) -> None:
    for section, table in data.items():
        if section not in SPEC:
            raise ConfigError(section, source, f"unknown section (known: {', '.join(SPEC)})")
        if not isinstance(table, dict):
            raise ConfigError(section, source, "must be a table [section]")
        for key, value in table.items():
            setting = SPEC[section].get(key)
            if setting is None:
                raise ConfigError(f"{section}.{key}", source, f"unknown setting (known: {', '.join(SPEC[section])})")
            values[section][key] = _coerce(section, key, setting, value, source)


def load(path: Path | str | None = None, env: Mapping[str, str] | None = None,
         overrides: Mapping[str, Mapping[str, Any]] | None = None) -> Config:
    """defaults.toml <- `path` <- environment <- `overrides` (command-line flags)."""
    env = os.environ if env is None else env
    values: dict[str, dict[str, Any]] = {s: {} for s in SPEC}
    _merge(values, _read_toml(DEFAULTS_FILE), str(DEFAULTS_FILE))
    for section, keys in SPEC.items():
        missing = set(keys) - set(values[section])
        if missing:
            raise ConfigError(f"{section}.{sorted(missing)[0]}", str(DEFAULTS_FILE), "no default")
    if path is not None:
        _merge(values, _read_toml(Path(path)), str(path))
    for name, text in env.items():
        if not name.startswith("GATEWAY_"):
            continue
        rest = name[len("GATEWAY_"):].lower()
        found = next((s for s in SPEC if rest.startswith(s + "_")), None)
        if found is None:
            raise ConfigError(name, "environment", f"unknown section (known: {', '.join(SPEC)})")
        section = found
        key = rest[len(section) + 1:]
        setting = SPEC[section].get(key)
        if setting is None:
            raise ConfigError(name, "environment", f"unknown setting (known: {', '.join(SPEC[section])})")
        values[section][key] = _coerce(section, key, setting, _from_env(setting, text), f"environment {name}")
    if overrides:
        _merge(values, overrides, "command line")
    _cross_check(values)
    return Config(values)


def _cross_check(values: dict[str, dict[str, Any]]) -> None:
    if values["store"]["batch_max"] > values["mqtt"]["receive_maximum"]:
        raise ConfigError("store.batch_max", "final check",
                          f"{values['store']['batch_max']} > mqtt.receive_maximum {values['mqtt']['receive_maximum']}: "
                          "a batch could never fill")
