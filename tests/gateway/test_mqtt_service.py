"""The gateway service in-process against a real mosquitto: alerts, config, commands, manual
screenings, metrics, and garbage on every subscribed topic."""
from __future__ import annotations

import json
import os
import random
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from gateway.http import make_server, serve_in_thread
from gateway.metrics import Metrics
from gateway.service import Gateway
from kiosk import protocol
from sim.broker import Broker
from tests.gateway.helpers import Listener, Publisher, make_config, online, screening
from tests.services import wait_until

CP = "cp-mq"


@pytest.fixture
def gw(tmp_path: Path, broker: Broker) -> Iterator[tuple[Gateway, int]]:
    cfg = make_config(tmp_path, broker.port, alerts={"fever_repeat_s": 5, "tick_s": 0.1})
    g = Gateway(cfg)
    metrics = Metrics(g.ingest, g.store.reader, 90_000, g.clock.now_ms)
    server = make_server(Path(cfg.store["path"]), 0, g.health, gateway=g, metrics=metrics.render)
    serve_in_thread(server)
    g.start()
    assert g.ingest is not None and g.ingest.ready.wait(10)
    yield g, server.server_port
    server.shutdown()
    g.stop()


def http(port: int, path: str, body: Any = None, method: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method or ("POST" if data else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return resp.status, (json.loads(raw) if resp.headers.get_content_type() == "application/json" else raw.decode())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_fever_alert_published_acknowledged_and_resolved(gw: tuple[Gateway, int], broker: Broker) -> None:
    g, port = gw
    alerts = Listener(broker.port, protocol.gateway_topic(CP, protocol.ALERT))
    kiosk = Publisher(broker.port, "k1")
    now = g.clock.now_ms()
    kiosk.publish(protocol.topic(CP, "k1", protocol.STATUS), protocol.encode(online()))
    kiosk.publish(protocol.topic(CP, "k1", protocol.EVENT),
                  protocol.encode(screening(0, now, "fever", 38.4, roi={"w": 2, "h": 1, "t": [36.1, 37.9]})))
    msgs = alerts.wait_for(lambda m: json.loads(m[1])["kind"] == "fever")
    alert = json.loads(msgs[0][1])
    assert alert["context"]["temp_c"] == 38.4 and alert["context"]["roi"]["w"] == 2
    assert alert["kiosk"] == "k1" and alert["context"]["lane"] == "L1" and alert["state"] == "open"
    wait_until(lambda: g.store.alert(alert["id"])["published"], 5, "alert marked published on PUBACK")
    status, body = http(port, f"/api/alerts/{alert['id']}/ack", {"by": "op1", "note": "rechecking"})
    assert status == 200 and body["state"] == "acknowledged" and body["ack_by"] == "op1"
    status, body = http(port, f"/api/alerts/{alert['id']}/resolve", {"by": "op1", "note": "37.9 oral, sent to clinic"})
    assert status == 200 and body["state"] == "resolved" and body["resolve_note"].startswith("37.9")
    assert http(port, f"/api/alerts/{alert['id']}/resolve", {"by": "op1", "note": "again"})[0] == 409
    assert http(port, "/api/alerts/nope/ack", {"by": "op1"})[0] == 404
    assert http(port, f"/api/alerts/{alert['id']}/ack", {"note": "who?"})[0] == 400
    alerts.wait_for(lambda m: json.loads(m[1])["state"] == "resolved")
    # Tracing from the fever alert: everyone at that kiosk around it.
    status, contacts = http(port, f"/api/trace/contacts?alert={alert['id']}&minutes=5")
    assert status == 200 and [p["seq"] for p in contacts["passages"]] == [0]
    kiosk.close()
    alerts.close()


def test_desired_config_validated_audited_published_retained(gw: tuple[Gateway, int], broker: Broker) -> None:
    g, port = gw
    status, body = http(port, f"/api/config/{CP}/k1", {"settings": {"fever_c": 39.5}, "by": "op1"}, "PUT")
    assert status == 400 and "fever_c" in body["error"]
    assert http(port, f"/api/config/{CP}/k1", {"settings": {"colour": 1}, "by": "op1"}, "PUT")[0] == 400
    assert http(port, f"/api/config/{CP}/k1", {"settings": {"fever_c": 37.5}}, "PUT")[0] == 400  # who?
    status, body = http(port, f"/api/config/{CP}/k1", {"settings": {"fever_c": 37.5}, "by": "op1"}, "PUT")
    assert status == 200 and body["old"] is None, body
    status, body = http(port, f"/api/config/{CP}/k1", {"settings": {"fever_c": 37.6}, "by": "op2"}, "PUT")
    assert body["old"] == {"fever_c": 37.5} and body["alert"]["kind"] == "threshold_change"
    audit = http(port, "/api/config-audit")[1]
    assert [(a["who"], a["new"]["fever_c"]) for a in audit] == [("op2", 37.6), ("op1", 37.5)]
    # A newcomer (a kiosk that boots later) reads the retained desired config.
    wait_until(lambda: g.store.desired_config(CP, "k1")["published"], 5, "config published")
    late = Listener(broker.port, protocol.topic(CP, "k1", protocol.CONFIG))
    msg = late.wait_for(lambda m: m[2])[0]
    assert json.loads(msg[1]) == {"v": 1, "settings": {"fever_c": 37.6}}
    late.close()
    # Fleet: applied (from status) vs desired.
    kiosk = Publisher(broker.port, "k1")
    kiosk.publish(protocol.topic(CP, "k1", protocol.STATUS), protocol.encode(online()))
    fleet = wait_until(lambda: http(port, "/api/fleet")[1], 5, "fleet")
    assert fleet[0]["online"] and fleet[0]["desired_config_hash"] == body["hash"]
    assert fleet[0]["config_in_sync"] is False  # the kiosk still reports its old hash
    kiosk.close()


def test_command_with_expiry_and_ack_tracked(gw: tuple[Gateway, int], broker: Broker) -> None:
    g, port = gw
    cmds = Listener(broker.port, protocol.topic(CP, "k1", protocol.CMD))
    status, cmd = http(port, "/api/commands", {"checkpoint": CP, "kiosk": "k1", "name": "selftest", "by": "tech",
                                               "ttl_s": 60})
    assert status == 200 and cmd["sent"]
    got = json.loads(cmds.wait_for(lambda m: True)[0][1])
    assert got["id"] == cmd["id"] and got["expires"] == cmd["expires"]
    assert http(port, "/api/commands", {"checkpoint": CP, "kiosk": "k1", "name": "format", "by": "t"})[0] == 400
    kiosk = Publisher(broker.port, "k1")
    kiosk.publish(protocol.topic(CP, "k1", protocol.ACK), protocol.encode(protocol.ack(cmd["id"], True, "all good")))
    row = wait_until(lambda: [c for c in http(port, "/api/commands")[1] if c["state"] == "acked"], 5, "ack")
    assert row[0]["ack_ok"] is True and row[0]["ack_detail"] == "all good"
    _, cmd2 = http(port, "/api/commands", {"checkpoint": CP, "kiosk": "k1", "name": "reboot", "by": "t", "ttl_s": 1})
    g.tick(g.clock.now_ms() + 5000)
    states = {c["id"]: c["state"] for c in http(port, "/api/commands")[1]}
    assert states[cmd2["id"]] == "expired" and states[cmd["id"]] == "acked"
    kiosk.close()
    cmds.close()


def test_manual_screening_counted_traced_and_alerting(gw: tuple[Gateway, int], broker: Broker) -> None:
    g, port = gw
    alerts = Listener(broker.port, protocol.gateway_topic(CP, protocol.ALERT))
    status, body = http(port, "/api/manual", {"checkpoint": CP, "lane": "L2", "dir": "out", "result": "fever",
                                              "temp_c": 38.1, "operator": "nurse1", "holder_ref": "hX",
                                              "kiosk": "k2", "note": "kiosk k2 down"})
    assert status == 200, body
    assert body["event"][1] == protocol.GATEWAY_ID and body["alerts"]
    alerts.wait_for(lambda m: json.loads(m[1])["kind"] == "fever")
    agg = http(port, f"/api/aggregates?checkpoint={CP}")[1]
    assert agg["total"]["manual"] == 1 and agg["total"]["manual:fever"] == 1 and "L2/out" in agg["lanes"]
    trace = http(port, "/api/trace/holder?ref=hX")[1]
    assert len(trace) == 1 and trace[0]["type"] == "manual"
    assert http(port, "/api/manual", {"checkpoint": CP, "lane": "L2", "result": "fever", "temp_c": 99,
                                      "operator": "n"})[0] == 400
    assert http(port, "/api/manual", {"checkpoint": CP, "lane": "L2", "result": "maybe", "temp_c": 37,
                                      "operator": "n"})[0] == 400
    _, body2 = http(port, "/api/manual", {"checkpoint": CP, "lane": "L2", "result": "pass", "temp_c": 36.6,
                                          "operator": "nurse1"})
    assert body2["event"][2] == body["event"][2] and body2["event"][3] == body["event"][3] + 1
    alerts.close()


def garbage_cases(rng: random.Random) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    deep = b"[" * 5000 + b"]" * 5000
    for channel in protocol.KIOSK_CHANNELS:
        t = protocol.topic(CP, "kg", channel)
        out += [(t, bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300)))),
                (t, b'{"a":' * 3000 + b"1" + b"}" * 3000), (t, deep),
                (t, b"{" + b" " * (256 * 1024) + b"}"),  # well past MAX_PAYLOAD
                (t, json.dumps({"v": 1, "epoch": 5, "seq": "x", "state": 7, "id": [], "settings": 3}).encode())]
    now = 1_767_225_600_000
    ev = protocol.topic(CP, "kg", protocol.EVENT)
    out += [
        (ev, protocol.encode(screening(1, None)).replace(b'"seq":1', b'"seq":' + b"9" * 40)),
        (ev, protocol.encode(screening(2, now)).replace(b'"temp_c":36.5', b'"temp_c":1e308')),
        (ev, protocol.encode(screening(3, now)).replace(b'"temp_c":36.5', b'"temp_c":1e999')),
        (ev, protocol.encode(screening(4, 10**16))),  # the year 318857
        (ev, protocol.encode(screening(5, 1000))),  # 1970
        (ev, protocol.encode(screening(6, now)).replace(b'"lane":"L1"', b'"lane":["L1"]')),
        (f"screening/v1/{CP}/kg", b"{}"), (f"screening/v9/{CP}/kg/event", b"{}"),
        (f"screening/v1/{CP}/_gateway/alert", b"not json"),
    ]
    return out


def test_garbage_on_every_topic_is_rejected_with_a_reason(gw: tuple[Gateway, int], broker: Broker) -> None:
    g, port = gw
    rng = random.Random(6)
    pub = Publisher(broker.port, "garbage")
    cases = garbage_cases(rng)
    for topic, payload in cases:
        pub.publish(topic, payload)
    pub.publish(protocol.topic(CP, "kg", protocol.EVENT), protocol.encode(screening(7, g.clock.now_ms())))
    wait_until(lambda: g.store.event_count() == 1, 20, "the good event after the garbage")
    # The garbage came through the watcher session (QoS 0), the good event through the durable one.
    rejects = wait_until(lambda: (r := http(port, "/api/rejects")[1]) and sum(r.values()) >= len(cases) and r, 20,
                         "every garbage message counted")
    assert sum(rejects.values()) == len(cases), rejects
    for reason in ("not_json", "too_large", "not_utf8", "out_of_range", "ts_future", "ts_past", "bad_type",
                   "bad_version", "bad_topic"):
        assert rejects.get(reason), (reason, rejects)
    assert "internal" not in rejects and "store_error" not in rejects
    dead = http(port, "/api/dead-letters?limit=1000")[1]
    assert dead and all(not d["topic"].endswith(("/verify", "/verdict")) for d in dead)
    assert all(d["payload_head"] is None or len(d["payload_head"]) <= 256 for d in dead)
    health = http(port, "/healthz")
    assert health[0] == 200 and health[1]["ok"]
    status, text = http(port, "/metrics")
    assert status == 200 and 'gateway_rejects_total{reason="not_json"}' in text
    assert "gateway_writer_queue_depth" in text and "gateway_write_latency_seconds_bucket" in text
    assert "gateway_kiosks_online" in text and "gateway_ingest_rate_events_per_second" in text
    pub.close()


def test_config_defaults_reach_the_service(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    g = Gateway(cfg, with_mqtt=False)
    assert g.health()["mqtt_connected"] is False and os.path.exists(cfg.store["path"])
    g.stop()


def test_delivery_report_and_bad_requests_over_http(gw: tuple[Gateway, int], broker: Broker) -> None:
    g, port = gw
    kiosk = Publisher(broker.port, "k5")
    now = g.clock.now_ms()
    for seq in (0, 1, 4):
        kiosk.publish(protocol.topic(CP, "k5", protocol.EVENT), protocol.encode(screening(seq, now)))
    wait_until(lambda: g.store.event_count() == 3, 10, "events")
    delivery = http(port, f"/api/delivery?checkpoint={CP}")[1]
    assert delivery[0]["missing"] == 2
    assert http(port, f"/api/delivery/gaps?checkpoint={CP}&kiosk=k5&epoch=e1")[1] == [[2, 3]]
    day = g.local.day(now)
    status, report = http(port, f"/api/reports/{CP}/{day}", {})
    assert status == 200 and report["version"] == 1 and report["data_gaps"]["possibly_lost"] == 2
    assert http(port, f"/api/reports/{CP}/{day}")[1]["version"] == 1
    assert http(port, f"/api/reports?checkpoint={CP}")[1][0]["day"] == day
    assert http(port, f"/api/aggregates?checkpoint={CP}")[1]["total"]["screened"] == 3
    assert http(port, "/api/nothing")[0] == 404
    assert http(port, "/api/trace/contacts?checkpoint=x")[0] == 400
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/manual", data=b"{not json", method="POST")
    try:
        urllib.request.urlopen(req, timeout=5)
        raise AssertionError("accepted a bad body")
    except urllib.error.HTTPError as err:
        assert err.code == 400
    kiosk.close()
