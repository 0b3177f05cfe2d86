"""Raw codes never reach a disk or a log: the real gateway process, the responder, real mosquitto.

A kiosk verifies a signed pass and an ID card with distinctive contents, sends malformed verify
requests carrying them too, and records the screening (with the verdict's holder_ref) as an
event. Then every file under the test's directory - the gateway's SQLite files (db, WAL, SHM),
its log, the broker's persistence and log - is
searched for the raw texts and the holder ids: absent. The gateway runs as `python -m gateway run`,
its responder configured through the environment, as deployed. The holder_ref is present (tracing works),
which also shows the search looks in the right places.
"""
from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from gateway.verdicts import Responder
from kiosk import protocol
from sim.broker import Broker
from tests.gateway_verdicts.conftest import DISTINCTIVE, NOW, Pki
from tests.gateway_verdicts.kiosk_client import KioskClient
from tests.services import GatewayProc, wait_until

DISTINCTIVE_ID = "998877198701017770"  # an ID number with a good check digit that occurs nowhere else
DAY = 86400


@pytest.fixture
def gateway_with_verdicts(tmp_path: Path, pki: Pki, broker: Broker,
                          monkeypatch: pytest.MonkeyPatch) -> Iterator[GatewayProc]:
    """`python -m gateway run` configured through the environment, so it starts its verdict responder."""
    for name, value in pki.env().items():
        monkeypatch.setenv(name, value)
    gw = GatewayProc(tmp_path, broker.port)
    wait_until(lambda: gw.get("/healthz").get("ok"), 10, "gateway connected to broker")
    yield gw
    gw.stop()


def metrics(gw: GatewayProc) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{gw.http_port}/metrics", timeout=5) as resp:
        text: str = resp.read().decode()
        return text


def test_raw_codes_and_holder_ids_never_reach_a_file(tmp_path: Path, pki: Pki, broker: Broker,
                                                     gateway_with_verdicts: GatewayProc) -> None:
    gateway = gateway_with_verdicts
    kiosk = KioskClient(broker.port, "cp-trace", "kiosk-01")
    now = int(time.time())  # the gateway process runs on the real clock
    raw_pass = pki.health.issue(DISTINCTIVE, "health", "green", now - 60, now + DAY)
    forged = pki.rogue.issue(DISTINCTIVE, "health", "green", now - 60, now + DAY)
    try:
        probe = 0

        def answered() -> bool:  # the responder subscribes shortly after the gateway is up
            nonlocal probe
            probe += 1
            kiosk.send(f"probe-{probe}", "unknown", "probe")
            try:
                kiosk.wait_for(f"probe-{probe}", 0.5)
                return True
            except AssertionError:
                return False

        wait_until(answered, 10, "the gateway's verdict responder")
        verdict = kiosk.ask("r-1", "health", raw_pass).body
        assert verdict["color"] == "green" and verdict["holder_ref"] == pki.hasher.holder_ref(DISTINCTIVE)
        id_verdict = kiosk.ask("r-2", "id", DISTINCTIVE_ID).body
        assert id_verdict["reason"] == "id_card"
        assert kiosk.ask("r-3", "health", forged).body["reason"] == "bad_signature"
        # Malformed requests that still carry the raw texts (what a dead-letter table would keep).
        kiosk.send_raw(b'{"id":"r-4","kind":"health","raw":42,"copy":"%s"}' % raw_pass.encode())
        kiosk.send_raw(b'{"kind":"id","raw":"%s"}' % DISTINCTIVE_ID.encode())  # no id: not answered
        kiosk.send_raw(b"not json " + raw_pass.encode())
        kiosk.send_raw(b'{"id":"r-5","kind":"id","raw":"%s"}' % DISTINCTIVE_ID.encode(),
                       topic="screening/v2/cp-trace/kiosk-01/verify")  # a kiosk on another contract version
        assert kiosk.wait_for("r-4").body["reason"] == "malformed_request"
        wait_until(lambda: 'checkpoint_verdicts_dropped_total{reason="missing_field"} 1' in metrics(gateway)
                   and 'checkpoint_verdicts_dropped_total{reason="not_json"} 1' in metrics(gateway), 5,
                   "the responder counted the malformed requests")
        # The screening events, as the kiosk records them: holder_ref only.
        for seq, v in ((1, verdict), (2, id_verdict)):
            event = protocol.event("ep-1", seq, 1, now * 1000, 1000 + seq, "L1", "in", "screening", "cfg",
                                   {"result": "pass", "temp_c": 36.6, "skin_c": 34.8, "ambient_c": 21.0,
                                    "distance_cm": 50, "paired": True,
                                    "code": protocol.code_info("health", v["color"], v["holder_ref"])})
            info = kiosk.client.publish(protocol.topic("cp-trace", "kiosk-01", "event"), protocol.encode(event), qos=1)
            info.wait_for_publish(5)
        wait_until(lambda: gateway.get("/api/summary").get("cp-trace", {}).get("events") == 2, 10,
                   "the gateway stored both events")
    finally:
        kiosk.close()
    gateway.stop()
    time.sleep(1.2)  # one more broker autosave (autosave_interval 1) after the traffic
    files = [p for p in tmp_path.rglob("*") if p.is_file() and pki.dir not in p.parents]
    names = {p.name for p in files}
    assert {"gateway.db", "gateway.log", "mosquitto.log"} <= names, names
    secrets_ = [DISTINCTIVE, DISTINCTIVE_ID, raw_pass, raw_pass.split(".")[1], raw_pass.split(".")[2],
                forged.split(".")[1]]
    found: dict[str, list[str]] = {}
    for path in files:
        data = path.read_bytes()
        for s in secrets_:
            if s.encode() in data or s.encode("utf-16-le") in data:
                found.setdefault(str(path.relative_to(tmp_path)), []).append(s[:12])
    assert not found, f"raw code or holder id on disk: {found}"
    stored = b"".join(p.read_bytes() for p in files if p.name.startswith("gateway.db"))
    assert verdict["holder_ref"].encode() in stored and id_verdict["holder_ref"].encode() in stored


def test_raw_codes_are_not_queued_into_the_broker_store_while_ingest_is_down(tmp_path: Path, pki: Pki,
                                                                            broker: Broker,
                                                                            gateway: GatewayProc) -> None:
    responder = Responder(pki.verifier(), "127.0.0.1", broker.port, clock_s=lambda: NOW)
    responder.start()
    kiosk = KioskClient(broker.port, "cp-trace", "kiosk-01")
    try:
        assert responder.ready.wait(5)
        gateway.stop()  # its session (and subscription to screening/#) stays on the broker
        assert kiosk.ask("r-1", "id", DISTINCTIVE_ID).body["reason"] == "id_card"
        time.sleep(1.5)  # a broker autosave
    finally:
        kiosk.close()
        responder.stop()
    store = broker.workdir / "mosquitto.db"
    assert store.exists()
    assert DISTINCTIVE_ID.encode() not in store.read_bytes()
