"""The shipped operations files: mosquitto.conf runs on Debian's mosquitto and agrees with the
gateway's defaults; the systemd unit starts the documented command."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway import config as gwconfig
from sim.services import ROOT
from tools.bench_ingest import DeployBroker

DEPLOY = ROOT / "deploy"


def conf_values() -> dict[str, str]:
    out = {}
    for line in (DEPLOY / "mosquitto.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            out[key] = value.strip()
    return out


def test_mosquitto_conf_is_consistent_with_the_gateway() -> None:
    conf = conf_values()
    gw = gwconfig.load(DEPLOY / "gateway.toml", env={})
    assert int(conf["max_queued_messages"]) >= 100_000, "explicit and large, never 0"
    assert int(conf["max_inflight_messages"]) == gw.mqtt["receive_maximum"] >= gw.store["batch_max"]
    assert conf["persistence"] == "true" and int(conf["autosave_interval"]) <= 60
    assert int(conf["max_packet_size"]) > 16384


def test_mosquitto_conf_runs(tmp_path: Path) -> None:
    with DeployBroker(tmp_path / "broker") as broker:
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        assert c.connect("127.0.0.1", broker.port) == paho.MQTT_ERR_SUCCESS
        c.disconnect()
        assert "Error" not in broker.log.read_text()


def test_systemd_unit_runs_the_documented_command() -> None:
    unit = (DEPLOY / "checkpoint-gateway.service").read_text()
    assert re.search(r"^ExecStart=.* -m gateway run --config /etc/checkpoint-gateway/gateway\.toml$", unit, re.M)
    assert "Restart=always" in unit and "StateDirectory=checkpoint-gateway" in unit
    with open(DEPLOY / "gateway.toml", "rb") as f:
        assert tomllib.load(f)["store"]["path"].startswith("/var/lib/checkpoint-gateway/")
    readme = (ROOT / "README.md").read_text()
    assert "deploy/checkpoint-gateway.service" in readme and "deploy/mosquitto.conf" in readme
