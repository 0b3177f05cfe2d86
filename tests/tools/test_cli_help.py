"""Every entry point answers --help, and the monitor shows real broker traffic through the contract."""
from __future__ import annotations

import subprocess
import sys

import pytest

from kiosk import protocol
from sim.services import python_env
from tests.e2e.test_malformed import good_event, mosquitto_pub


@pytest.mark.parametrize("module", ["gateway", "sim", "tools.monitor"])
def test_help(module: str) -> None:
    out = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=30,
                         env=python_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: python -m {module}")


def test_monitor_prints_validated_traffic_and_rejects(broker) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-m", "tools.monitor", "--port", str(broker.port), "--count", "3",
                             "--timeout", "20"], stdout=subprocess.PIPE, text=True, env=python_env())
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("monitor: watching screening/#")  # subscribed: safe to publish
        mosquitto_pub(broker.port, protocol.topic("cp1", "k1", protocol.STATUS),
                      protocol.encode(protocol.status_offline("e1", 1)))
        mosquitto_pub(broker.port, protocol.topic("cp1", "k1", protocol.VERIFY),
                      protocol.encode(protocol.verify("r1", "id", "110101199001011234")))
        mosquitto_pub(broker.port, protocol.topic("cp1", "k1", protocol.EVENT), b"{broken")
        text, _ = proc.communicate(timeout=25)
    finally:
        proc.kill()
    assert "110101199001011234" not in text, "raw codes are never printed"
    assert "REJECT not_json" in text
    assert "cp1/k1 verify" in text and "chars hidden" in text
