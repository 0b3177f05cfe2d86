"""The verdict responder through a real mosquitto with real paho clients and real Ed25519 passes."""
from __future__ import annotations

import statistics
import threading
import time
from typing import Iterator

import pytest

from gateway.verdicts import Responder, start_from_env
from gateway.verifier import Verdict
from kiosk import protocol
from sim.broker import Broker
from sim.passes import Issuer
from tests.gateway_verdicts.conftest import HOLDER, NOW, REVOKED, Pki
from tests.gateway_verdicts.kiosk_client import KioskClient
from tests.services import wait_until

DAY = 86400


@pytest.fixture
def responder(pki: Pki, broker: Broker) -> Iterator[Responder]:
    r = Responder(pki.verifier(), "127.0.0.1", broker.port, clock_s=lambda: NOW)
    r.start()
    assert r.ready.wait(5), "responder did not subscribe"
    yield r
    r.stop()


@pytest.fixture
def kiosk(broker: Broker) -> Iterator[KioskClient]:
    k = KioskClient(broker.port)
    yield k
    k.close()


def test_every_kind_of_code_gets_its_verdict(pki: Pki, responder: Responder, kiosk: KioskClient) -> None:
    ref = pki.hasher.holder_ref(HOLDER)
    good_red = pki.health.issue(HOLDER, "health", "red", NOW - 60, NOW + DAY)
    body, _, sig = protocol.decode_pass(good_red)
    body["c"] = "green"
    tampered = protocol.pass_signing_input(body).decode() + "." + protocol.b64url_encode(sig)
    revoked_holder = REVOKED
    cases = {
        "green": ("health", pki.health.issue(HOLDER, "health", "green", NOW - 60, NOW + DAY),
                  Verdict("green", True, "ok", ref)),
        "yellow": ("health", pki.health.issue(HOLDER, "health", "yellow", NOW - 60, NOW + DAY),
                   Verdict("yellow", True, "ok", ref)),
        "red": ("health", good_red, Verdict("red", True, "ok", ref)),
        "vehicle": ("vehicle", pki.vehicle.issue("粤B-88888", "vehicle", "green", NOW - 60, NOW + DAY),
                    Verdict("green", True, "ok", pki.hasher.holder_ref("粤B-88888"))),
        "expired": ("health", pki.health.issue(HOLDER, "health", "green", NOW - 2 * DAY, NOW - DAY),
                    Verdict("red", False, "expired", ref)),
        "future": ("health", pki.health.issue(HOLDER, "health", "green", NOW + 3600, NOW + DAY),
                   Verdict("red", False, "not_yet_valid", ref)),
        "forged": ("health", pki.rogue.issue(HOLDER, "health", "green", NOW - 60, NOW + DAY),
                   Verdict("red", False, "bad_signature", None)),
        "tampered": ("health", tampered, Verdict("red", False, "bad_signature", None)),
        "unknown-issuer": ("health", Issuer("elsewhere").issue(HOLDER, "health", "green", NOW - 60, NOW + DAY),
                           Verdict("red", False, "unknown_issuer", None)),
        "revoked": ("health", pki.health.issue(revoked_holder, "health", "green", NOW - 60, NOW + DAY),
                    Verdict("red", False, "revoked", pki.hasher.holder_ref(revoked_holder))),
        "malformed-pass": ("health", "SP1.bm90IGEgcGFzcw.AAAA", Verdict("red", False, "malformed", None)),
        "id-card": ("id", HOLDER, Verdict("none", False, "id_card", ref)),
        "garbage": ("unknown", "\u0007\u00ff<script>\u202e", Verdict("none", False, "unknown_code", None)),
    }
    for req_id, (kind, raw, expected) in cases.items():
        got = kiosk.ask(req_id, kind, raw)
        assert got.topic == "screening/v1/cp-01/kiosk-01/verdict"
        assert got.body == {"id": req_id, "color": expected.color, "valid": expected.valid,
                            "reason": expected.reason, "holder_ref": expected.holder_ref}, req_id
        protocol.validate(protocol.VERDICT, got.body)
        assert got.retain is False
        assert got.expiry is not None and 1 <= got.expiry <= protocol.VERIFY_EXPIRY_S  # the broker counts it down
    # An unknown `kind` is a malformed request with a readable id: answered at once, colour none.
    kiosk.send_raw(b'{"id":"odd-kind","kind":"passport","raw":"X"}')
    assert kiosk.wait_for("odd-kind").body == {"id": "odd-kind", "color": "none", "valid": False,
                                                "reason": "malformed_request", "holder_ref": None}
    snap = responder.stats.snapshot()
    assert snap["answered"] == len(cases) + 1 and snap["by_reason"]["ok"] == 4
    assert snap["by_reason"]["malformed_request"] == 1 and snap["dropped"] == {}


def test_many_requests_each_get_exactly_one_correct_verdict(pki: Pki, responder: Responder, broker: Broker) -> None:
    kiosks = [KioskClient(broker.port, "cp-01", f"kiosk-{i}") for i in range(4)]
    colors = ("green", "yellow", "red")
    passes = {c: pki.health.issue(HOLDER, "health", c, NOW - 60, NOW + DAY) for c in colors}
    rtts: list[float] = []
    expected: dict[tuple[int, str], str] = {}
    lock = threading.Lock()

    def one_kiosk(k: int) -> None:  # each kiosk one person at a time, the four side by side
        for n in range(k, 200, 4):
            color = colors[n % 3]
            req_id = f"r-{n}"
            t0 = kiosks[k].send(req_id, "health", passes[color])
            rtt = kiosks[k].wait_for(req_id).at - t0
            with lock:
                expected[(k, req_id)] = color
                rtts.append(rtt)

    try:
        threads = [threading.Thread(target=one_kiosk, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # Then a burst: 100 requests in flight at once.
        for n in range(200, 300):
            k = n % 4
            expected[(k, f"r-{n}")] = colors[n % 3]
            kiosks[k].send(f"r-{n}", "health", passes[colors[n % 3]])
        for (k, req_id), color in expected.items():
            assert kiosks[k].wait_for(req_id).body["color"] == color
        time.sleep(0.3)  # room for a duplicate to show up
        for k, client in enumerate(kiosks):
            ids = [r.body["id"] for r in client.verdicts]
            assert sorted(ids) == sorted(i for (kk, i) in expected if kk == k), "missing, duplicate or crossed verdicts"
            assert all(r.topic.endswith(f"/kiosk-{k}/verdict") for r in client.verdicts)
    finally:
        for client in kiosks:
            client.close()
    assert len(rtts) == 200
    rtts.sort()
    print(f"\nverdict round trip over {len(rtts)} requests (4 kiosks, broker default config): p50 {statistics.median(rtts) * 1000:.2f} ms, "
          f"p99 {rtts[int(0.99 * len(rtts)) - 1] * 1000:.2f} ms, max {rtts[-1] * 1000:.2f} ms")
    assert responder.stats.snapshot()["answered"] == 300


def test_malformed_requests_are_counted_and_unreadable_ones_not_answered(responder: Responder,
                                                                        kiosk: KioskClient) -> None:
    for payload in (b"\xff\xfe", b"not json", b"[1,2]", b'{"kind":"id","raw":"x"}', b'{"id":"_x","kind":"id","raw":"x"}',
                    b'{"id":"bad id","kind":"id","raw":"x"}', b""):
        kiosk.send_raw(payload)
    kiosk.send_raw(b'{"id":"x-1","kind":"id","raw":"1"}', topic="screening/v1/cp-01/_gateway/verify")
    kiosk.send_raw(b'{"id":"readable","kind":"id","raw":' + b'"%s"}' % (b"9" * 3000))  # too_large, id readable
    kiosk.send_raw(b'{"id":"typed","kind":"id","raw":42}')
    assert kiosk.wait_for("readable").body["reason"] == "malformed_request"
    assert kiosk.wait_for("typed").body["reason"] == "malformed_request"
    wait_until(lambda: responder.stats.received == 10, 5, "all requests seen")
    time.sleep(0.2)
    assert [r.body["id"] for r in kiosk.verdicts] == ["readable", "typed"]
    assert responder.stats.snapshot()["dropped"] == {"not_utf8": 1, "not_json": 2, "not_object": 1,
                                                       "missing_field": 1, "reserved_id": 1, "bad_id": 1,
                                                       "unknown_channel": 1}


def test_an_expired_request_is_not_answered(pki: Pki, responder: Responder, kiosk: KioskClient) -> None:
    raw = pki.health.issue(HOLDER, "health", "green", NOW - 60, NOW + DAY)
    responder.pause()  # the verifier is stuck (a slow online check, say) past the request's expiry
    kiosk.send("late", "health", raw, expiry_s=1)
    wait_until(lambda: responder.stats.received == 1, 5, "request received")
    time.sleep(1.2)
    responder.resume()
    wait_until(lambda: responder.stats.snapshot()["dropped"].get("expired") == 1, 5, "expired request dropped")
    assert kiosk.ask("on-time", "health", raw).body["color"] == "green"
    assert [r.body["id"] for r in kiosk.verdicts] == ["on-time"]


def test_restarting_the_responder(pki: Pki, broker: Broker, kiosk: KioskClient) -> None:
    raw = pki.health.issue(HOLDER, "health", "yellow", NOW - 60, NOW + DAY)
    first = Responder(pki.verifier(), "127.0.0.1", broker.port, clock_s=lambda: NOW)
    first.start()
    assert first.ready.wait(5)
    assert kiosk.ask("before", "health", raw).body["color"] == "yellow"
    first.stop()
    kiosk.send("while-down", "health", raw)  # nobody to answer: the kiosk goes to a manual check
    second = Responder(pki.verifier(), "127.0.0.1", broker.port, clock_s=lambda: NOW)
    second.start()
    try:
        assert second.ready.wait(5)
        assert kiosk.ask("after", "health", raw).body["color"] == "yellow"
        time.sleep(0.2)
        # No session is kept: a request made while the responder was down is not answered late.
        assert [r.body["id"] for r in kiosk.verdicts] == ["before", "after"]
    finally:
        second.stop()
    # And the broker restarting under a running responder: it reconnects and resubscribes.
    third = Responder(pki.verifier(), "127.0.0.1", broker.port, clock_s=lambda: NOW)
    third.start()
    try:
        assert third.ready.wait(5)
        broker.restart()
        wait_until(lambda: third.ready.is_set(), 10, "responder resubscribed")
        again = KioskClient(broker.port, kiosk="kiosk-02")
        try:
            assert again.ask("after-broker", "health", raw).body["reason"] == "ok"
        finally:
            again.close()
    finally:
        third.stop()


def test_start_from_env(pki: Pki, broker: Broker, kiosk: KioskClient) -> None:
    assert start_from_env("127.0.0.1", broker.port, env={}) is None  # not configured: not started
    r = start_from_env("127.0.0.1", broker.port, env=pki.env())
    assert r is not None
    try:
        assert r.ready.wait(5)
        raw = pki.health.issue(HOLDER, "health", "green", int(time.time()) - 60, int(time.time()) + DAY)
        assert kiosk.ask("env", "health", raw).body["reason"] == "ok"
        assert 'checkpoint_verdicts_answered_total{reason="ok"} 1' in r.stats.prometheus()
    finally:
        r.stop()
