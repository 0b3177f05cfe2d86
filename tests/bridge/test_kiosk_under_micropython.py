"""The unmodified firmware as a real MicroPython 1.29 process, its board on the simulator over the bridge.

The App drives its own MLX90640 and SHT31 drivers on the register-level emulators through the
bridged I2C bus, reads the scanner UART, lights the recorded outputs and speaks MQTT 5 over real
sockets to a real mosquitto and the gateway.
"""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from kiosk import protocol

from gateway.store import Reader
from sim.board.i2c import nack
from sim.broker import Broker
from tests.bridge.rig import Rig, stored_events
from tests.e2e.test_lwt import StatusWatcher
from tests.services import GatewayProc, wait_until

KEEPALIVE_S = 6  # Debian's mosquitto 2.0.11 checks keepalives every 5 s: see tests/e2e/test_lwt.py


def _ready(rig: Rig) -> None:
    wait_until(lambda: "Ready - step up" in rig.shown(), 20, "the kiosk warmed up, measured the air and went online")


def test_fever_through_the_bridge_is_stored_exactly_once(tmp_path: Path, gateway: GatewayProc) -> None:
    rig = Rig(tmp_path, gateway.broker_port, keepalive_s=KEEPALIVE_S).start()
    try:
        wait_until(lambda: any(k["state"] == "online" for k in gateway.get("/api/kiosks")), 15, "status online")
        _ready(rig)
        rig.board.uart("scanner").inject(b"110101199001011237\r\n")  # an ID card, then the person steps up
        shown_at = time.monotonic()
        rig.view.enter(rig.person(core_c=39.0))
        screening = wait_until(lambda: rig.events("screening"), 15, "a screening decision")[0]
        decided_at = rig.proc.server.ledger_times[rig.board.ledger.index(screening)]
        rig.view.leave()
        print(f"fever decision {decided_at - shown_at:.2f} s after the person stepped up (MicroPython, "
              f"register-level sensor over the bridge)")
        assert screening["result"] == "fever" and screening["temp_c"] > 37.3, screening
        # No verdict for an ID card code: the kiosk shows "manual check" and records the colour as none.
        assert screening["code"]["kind"] == "id" and screening["code"]["color"] == "none", screening
        assert screening["paired"] is True, screening
        wait_until(lambda: any(line.startswith("Please wait") for line in rig.shown()), 5, "the fever screen")
        assert any(f > 0 for _, f in rig.board.outputs.tone), "the alarm sounded"
        assert (200, 0, 0) in [rgb for _, rgb in rig.board.outputs.led], "the LED ring went red"
        state = rig.proc.state()
        assert state["frames"] > 0 and state["mem_free"] > 0, state
        assert rig.proc.stop(clean=True, timeout_s=15) == 0, rig.proc.log_text()
    finally:
        rig.close()
    ledger = rig.events()
    assert ledger[0]["type"] == "boot" and ledger[0]["board"] == rig.board.profile["name"]
    assert rig.proc.server.exit_code == 0 and rig.proc.server.stats.byes == 1
    wait_until(lambda: gateway.get("/api/events/count")["events"] >= len(ledger), 10, "every event stored")
    stored = Reader(tmp_path / "gateway.db").event_keys()
    assert len(stored) == len(set(stored)) == len(ledger)
    assert set(stored) == {("cp-upy", "k1", e["epoch"], e["seq"]) for e in ledger}
    fevers = [e for e in stored_events(tmp_path / "gateway.db", "k1") if e["result"] == "fever"]
    assert len(fevers) == 1 and fevers[0]["seq"] == screening["seq"]
    kiosk = wait_until(lambda: [k for k in gateway.get("/api/kiosks") if k["state"] == "offline"], 10,
                       "clean goodbye recorded")[0]
    assert kiosk["epoch"] == ledger[0]["epoch"] and kiosk["board"] == rig.board.profile["name"]


def test_frozen_process_goes_offline_by_lwt(tmp_path: Path, gateway: GatewayProc) -> None:
    rig = Rig(tmp_path, gateway.broker_port, kiosk="k2", keepalive_s=KEEPALIVE_S)
    watcher = StatusWatcher(gateway.broker_port, protocol.topic("cp-upy", "k2", protocol.STATUS))
    rig.start()
    try:
        watcher.wait_for("online", 15)
        frozen_at = time.monotonic()
        rig.proc.freeze()  # SIGSTOP: its socket stays open and silent, as after a dead radio
        offline_at = watcher.wait_for("offline", 3 * KEEPALIVE_S + 1)
        took = offline_at - frozen_at
        print(f"LWT offline {took:.2f} s after SIGSTOP (keepalive {KEEPALIVE_S} s)")
        assert took <= 3 * KEEPALIVE_S
        assert rig.proc.alive, "frozen, not dead"
        wait_until(lambda: any(k["kiosk"] == "k2" and k["state"] == "offline" for k in gateway.get("/api/kiosks")),
                   15, "the gateway sees it offline")  # its store is another process: loaded CI runs lag
        assert rig.proc.watchdog_resets == 0, "a frozen process is a dead network, not a dead CPU"
    finally:
        watcher.close()
        rig.close()


def test_i2c_fault_degrades_and_recovers(tmp_path: Path, gateway: GatewayProc) -> None:
    rig = Rig(tmp_path, gateway.broker_port, kiosk="k3", keepalive_s=KEEPALIVE_S).start()
    try:
        _ready(rig)
        rig.board.mlx.fault_hook = nack()  # every transaction to the MLX90640 NACKs (EIO)
        fault = wait_until(lambda: rig.events("fault"), 10, "a sensor fault event")[0]
        assert fault["part"] == "sensor" and "I2C error" in fault["detail"], fault
        wait_until(lambda: rig.shown()[-1] == "Manual screening", 5, "manual screening shown")
        rig.board.mlx.fault_hook = None
        rig.board.mlx.unplugged = True  # and then it falls off the bus: ENODEV, still one fault per outage
        frames = rig.proc.state()["frames"]
        reports = rig.proc.server.state_at
        wait_until(lambda: rig.proc.server.state_at != reports, 2, "the kiosk keeps running")
        rig.board.mlx.unplugged = False
        cleared = wait_until(lambda: [e for e in rig.events("fault") if e.get("cleared")], 10, "sensor recovered")
        assert cleared[0]["part"] == "sensor"
        wait_until(lambda: rig.proc.state()["frames"] > frames, 5, "frames again")
        assert [e["part"] for e in rig.events("fault") if not e.get("cleared")] == ["sensor"]
        assert rig.proc.alive
        wait_until(lambda: [e for e in stored_events(tmp_path / "gateway.db", "k3") if e["type"] == "fault"], 10,
                   "the fault reached the gateway")
    finally:
        rig.close()


def _post(port: int, path: str, body: dict[str, object]) -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_reboot_command_resets_and_the_supervisor_boots_it_again(tmp_path: Path, gateway: GatewayProc) -> None:
    rig = Rig(tmp_path, gateway.broker_port, kiosk="k4", keepalive_s=KEEPALIVE_S).start()
    try:
        wait_until(lambda: rig.proc.state().get("connected"), 15, "online")
        cmd = _post(gateway.http_port, "/api/commands", {"checkpoint": "cp-upy", "kiosk": "k4", "name": "reboot",
                                                         "by": "test", "ttl_s": 60})
        boots = wait_until(lambda: rig.events("boot")[1:], 15, "booted again after board.reset()")
        first = rig.events("boot")[0]
        assert boots[0]["boot"] == first["boot"] + 1 and rig.proc.boots == 2
        assert rig.proc.server.stats.resets == 1
        wait_until(lambda: [c for c in gateway.get("/api/commands") if c["id"] == cmd["id"] and c["state"] == "acked"],
                   10, "the reboot acked (before acting on it)")
        wait_until(lambda: rig.proc.state().get("connected"), 15, "online again")
        assert rig.proc.server.stats.resets == 1 and rig.proc.boots == 2, "a redelivered reboot does not loop"
        assert rig.proc.stop(clean=True) == 0
    finally:
        rig.close()


def test_watchdog_expiry_kills_and_reboots(tmp_path: Path, broker: Broker) -> None:
    rig = Rig(tmp_path, broker.port, kiosk="k5").start()
    try:
        wdt = wait_until(lambda: rig.board.watchdog if rig.board.watchdog and rig.board.watchdog.feeds else None, 15,
                         "the firmware armed and fed its watchdog over the bridge")
        wdt.timeout_ms = 0  # as if the firmware had stopped feeding: the supervisor resets the "chip"
        wait_until(lambda: len(rig.events("boot")) == 2, 15, "booted again after the watchdog reset")
        assert rig.proc.watchdog_resets == 1 and rig.proc.boots == 2
        assert rig.events("boot")[1]["boot"] == rig.events("boot")[0]["boot"] + 1
    finally:
        rig.close()
