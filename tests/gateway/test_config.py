"""Configuration: documented defaults, a file, the environment, and a clear error for bad values."""
from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway import config as gwconfig
from sim.services import ROOT, python_env


def test_every_setting_has_a_documented_default() -> None:
    with open(gwconfig.DEFAULTS_FILE, "rb") as f:
        defaults = tomllib.load(f)
    assert {s: set(v) for s, v in defaults.items()} == {s: set(v) for s, v in gwconfig.SPEC.items()}
    text = gwconfig.DEFAULTS_FILE.read_text()
    for section in gwconfig.SPEC:
        assert f"[{section}]" in text
    cfg = gwconfig.load(None, env={})
    assert cfg.site["timezone"] == "Asia/Shanghai" and cfg.retention["days"] == 28
    assert cfg.get("store", "batch_max") <= cfg.get("mqtt", "receive_maximum")


def test_shipped_deploy_config_is_valid() -> None:
    cfg = gwconfig.load(ROOT / "deploy" / "gateway.toml", env={})
    assert cfg.store["path"].startswith("/var/lib/")


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text('[mqtt]\nport = 1884\n[report]\nat = "06:30"\n')
    cfg = gwconfig.load(f, env={"GATEWAY_MQTT_PORT": "1885", "GATEWAY_ALERTS_TICK_S": "0.5",
                                "GATEWAY_SITE_TIMEZONE": "Asia/Urumqi", "HOME": "/x"})
    assert cfg.mqtt["port"] == 1885 and cfg.hhmm("report") == (6, 30) and cfg.alerts["tick_s"] == 0.5
    assert cfg.site["timezone"] == "Asia/Urumqi"
    cfg = gwconfig.load(f, env={"GATEWAY_MQTT_PORT": "1885"}, overrides={"mqtt": {"port": 1886}})
    assert cfg.mqtt["port"] == 1886


@pytest.mark.parametrize("text,env,needle", [
    ('[mqtt]\nport = 70000\n', {}, "mqtt.port (from"),
    ('[mqtt]\nport = "x"\n', {}, "must be int"),
    ('[mqtt]\nprot = 1\n', {}, "mqtt.prot"),
    ('[nope]\nx = 1\n', {}, "unknown section"),
    ('[site]\ntimezone = "Mars/Olympus"\n', {}, "unknown time zone"),
    ('[report]\nat = "25:00"\n', {}, "not a local time"),
    ('[store]\nbackend = "postgresql"\n', {}, "scale-out"),
    ('[store]\nbatch_max = 2000\n', {}, "receive_maximum"),
    ('[mqtt\n', {}, "not valid TOML"),
    ('', {"GATEWAY_MQTT_PORT": "eighty"}, "GATEWAY_MQTT_PORT"),
    ('', {"GATEWAY_MQTT_PORTS": "1"}, "unknown setting"),
    ('', {"GATEWAY_RETENTION_DAYS": "0"}, "outside"),
    ('[alerts]\nfever_repeat_s = true\n', {}, "must be int"),
])
def test_bad_values_are_named(tmp_path: Path, text: str, env: dict[str, str], needle: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(gwconfig.ConfigError) as err:
        gwconfig.load(f, env=env)
    assert needle in str(err.value)


def test_cli_reports_bad_config_and_exits_2(tmp_path: Path) -> None:
    f = tmp_path / "bad.toml"
    f.write_text("[mqtt]\nport = 0\n")
    proc = subprocess.run([sys.executable, "-m", "gateway", "run", "--config", str(f)], capture_output=True,
                          text=True, env=python_env(), cwd=ROOT, timeout=30)
    assert proc.returncode == 2 and "mqtt.port" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "gateway", "config", "--config", str(ROOT / "deploy" / "gateway.toml")],
                          capture_output=True, text=True, env=python_env(), cwd=ROOT, timeout=30)
    assert proc.returncode == 0 and "[retention]" in proc.stdout
