"""Days driven by the injectable clock: zero-report, a 3 h offline gap, late events re-issuing the
report, a checkpoint that sent nothing, repeating fever alerts, silent kiosks, retention."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from gateway import reports
from gateway.clock import HOUR_MS, ManualClock
from gateway.service import Gateway
from gateway.store import Accepted
from kiosk import protocol
from tests.gateway.helpers import T0, fault, make_config, online, screening

CP = "cp-day"
MIN = 60_000


class FakePublisher:
    """Stands in for the broker where the test is about the clock: every publish is PUBACKed at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bool]] = []

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_done: Callable[[], None] | None = None, expiry_s: int | None = None) -> bool:
        self.sent.append((topic, json.loads(payload), retain))
        if on_done:
            on_done()
        return True

    def on(self, channel: str) -> list[dict[str, Any]]:
        return [b for t, b, _ in self.sent if t.endswith("/" + channel)]


@pytest.fixture
def day(tmp_path: Path) -> tuple[Gateway, ManualClock, FakePublisher]:
    clock = ManualClock(T0)
    pub = FakePublisher()
    g = Gateway(make_config(tmp_path), clock=clock, publisher=pub, with_mqtt=False)
    yield g, clock, pub
    g.stop()


def feed(g: Gateway, clock: ManualClock, cp: str, kiosk: str, channel: str, body: dict[str, Any],
         at: int | None = None) -> Any:
    if at is not None:
        clock.set(at)
    return g.store.write_batch([Accepted(cp, kiosk, channel, body, clock.now_ms())])


def busy_day(g: Gateway, clock: ManualClock, fever: bool = False) -> None:
    """08:00-23:50 local on 2026-01-01; k2's LWT at 12:00, back at 15:00; cp-quiet is known but silent."""
    for k in ("k1", "k2"):
        feed(g, clock, CP, k, "status", online(), T0)
    feed(g, clock, "cp-quiet", "q1", "status", online(), T0)
    seqs = {"k1": 0, "k2": 0}
    for step in range(0, 16 * 60, 10):
        t = T0 + step * MIN
        for k, lane in (("k1", "L1"), ("k2", "L2")):
            if k == "k2" and 4 * 60 <= step < 7 * 60:
                if step == 4 * 60:
                    feed(g, clock, CP, k, "status", protocol.status_offline("e1", 1), t)
                continue
            if k == "k2" and step == 7 * 60:
                feed(g, clock, CP, k, "status", online(), t)
            result = "fever" if fever and step == 60 and k == "k1" else ("recheck" if step % 60 == 0 else "pass")
            feed(g, clock, CP, k, "event", screening(seqs[k], t, result, 38.2 if result == "fever" else 36.5,
                                                     lane=lane, holder=f"h{step}"), t)
            seqs[k] += 1
            feed(g, clock, CP, k, "telemetry", protocol.telemetry(step * MIN, t, fps=4.0, outbox=0), t)
        feed(g, clock, "cp-quiet", "q1", "telemetry", protocol.telemetry(step * MIN, t, fps=4.0, outbox=0), t)
    for cp, k in ((CP, "k1"), (CP, "k2"), ("cp-quiet", "q1")):  # heartbeats go on to the end of the day
        feed(g, clock, cp, k, "telemetry", protocol.telemetry(0, None, fps=4.0), T0 + 16 * HOUR_MS - 30_000)


def test_zero_report_offline_gap_and_silent_checkpoint(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, pub = day
    busy_day(g, clock)
    clock.set(T0 + 16 * HOUR_MS)  # 2026-01-02 00:00 local: not yet the report time (00:10)
    g.tick()
    assert not pub.on("report")
    clock.set(T0 + 16 * HOUR_MS + 10 * MIN)
    g.tick()
    reports = {r["checkpoint"]: r for r in pub.on("report")}
    assert set(reports) == {CP, "cp-quiet"}
    r = reports[CP]
    assert r["day"] == "2026-01-01" and r["version"] == 1
    assert r["zero_report"] is True and r["no_data"] is False and r["fevers"] == []
    assert r["totals"]["screened"] == 96 + 78 and r["totals"]["fever"] == 0
    assert r["lanes"]["L1/in"]["recheck"] == 16
    gap = [p for p in r["data_gaps"]["offline"] if p["kiosk"] == "k2"]
    assert gap == [{"kiosk": "k2", "from": "2026-01-01 12:00:00", "to": "2026-01-01 15:00:00", "minutes": 180.0}]
    assert r["kiosks"]["k1"]["uptime_pct"] >= 99.9
    assert 78 < r["kiosks"]["k2"]["uptime_pct"] < 83  # 3 h of 16 h known
    quiet = reports["cp-quiet"]
    assert quiet["no_data"] is True and quiet["zero_report"] is False and quiet["flag"]
    csv_path = Path(g.report_dir) / CP / "2026-01-01.v1.csv"
    html_path = csv_path.with_suffix(".html")
    assert "zero_report,True" in csv_path.read_text()
    assert "Zero report" in html_path.read_text() and "12:00-15:00 (180.0 min)" in html_path.read_text()
    g.tick(clock.now_ms() + MIN)
    assert len(pub.on("report")) == 2, "issued once per checkpoint and day"


def test_late_events_reissue_the_report(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, pub = day
    busy_day(g, clock)
    clock.set(T0 + 16 * HOUR_MS + 10 * MIN)
    g.tick()
    first = next(r for r in pub.on("report") if r["checkpoint"] == CP)
    # A kiosk that was cut off uploads its outbox the next morning: events of yesterday, and a fever.
    clock.set(T0 + 25 * HOUR_MS)
    late_ts = T0 + 2 * HOUR_MS + 5 * MIN
    feed(g, clock, CP, "k3", "event", screening(0, late_ts, "fever", 38.6, lane="L3", epoch="e3"))
    feed(g, clock, CP, "k3", "event", screening(1, late_ts + MIN, "pass", epoch="e3", lane="L3"))
    g.tick()
    second = [r for r in pub.on("report") if r["checkpoint"] == CP][-1]
    assert second["version"] == 2 and second["day"] == first["day"]
    assert second["late_events"] == 2 and second["totals"]["screened"] == first["totals"]["screened"] + 2
    assert second["zero_report"] is False and second["fevers"][0]["kiosk"] == "k3"
    assert second["fevers"][0]["time"] == "2026-01-01 10:05:00"
    assert (Path(g.report_dir) / CP / "2026-01-01.v2.html").exists()
    g.tick(clock.now_ms() + 5 * MIN)
    assert len([r for r in pub.on("report") if r["checkpoint"] == CP]) == 2, "no re-issue without new late events"
    assert [v["version"] for v in g.store.reports(CP, "2026-01-01")] == [1, 2]


def test_fever_report_lists_outcome(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, pub = day
    busy_day(g, clock, fever=True)
    alert = next(a for a in g.store.alerts() if a["kind"] == "fever")
    g.set_alert(alert["id"], "resolve", "nurse1", "oral 37.1: false alarm, hot drink")
    clock.set(T0 + 16 * HOUR_MS + 10 * MIN)
    g.tick()
    r = next(r for r in pub.on("report") if r["checkpoint"] == CP)
    assert r["zero_report"] is False
    assert r["fevers"] == [{"time": "2026-01-01 09:00:00", "ts_ms": T0 + HOUR_MS, "kiosk": "k1", "lane": "L1",
                            "dir": "in", "temp_c": 38.2, "source": "kiosk", "alert": alert["id"],
                            "outcome": "resolved", "by": "nurse1", "note": "oral 37.1: false alarm, hot drink"}]


def test_unacknowledged_fever_alert_repeats(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, pub = day
    feed(g, clock, CP, "k1", "status", online(), T0)
    res = feed(g, clock, CP, "k1", "event", screening(0, T0, "fever", 38.0))
    alert = res.alerts[0]
    g.tick(T0 + 30_000)  # written straight into the store: the timer publishes it
    assert [a["repeat"] for a in pub.on("alert") if a["kind"] == "fever"] == [0]
    g.tick(T0 + 61_000)
    g.tick(T0 + 62_000)
    assert [a["repeat"] for a in pub.on("alert") if a["kind"] == "fever"] == [0, 1]
    g.tick(T0 + 122_000)
    assert [a["repeat"] for a in pub.on("alert") if a["kind"] == "fever"] == [0, 1, 2]
    clock.set(T0 + 130_000)
    g.set_alert(alert["id"], "ack", "op", "")
    g.tick(T0 + 400_000)
    assert [a["state"] for a in pub.on("alert") if a["kind"] == "fever"][-1] == "acknowledged"
    assert len([a for a in pub.on("alert") if a["kind"] == "fever"]) == 4


def test_silent_kiosk_goes_offline_and_comes_back(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, pub = day
    feed(g, clock, CP, "k1", "status", online(), T0)
    feed(g, clock, CP, "k1", "telemetry", protocol.telemetry(5, None, fps=4.0), T0 + 10_000)
    g.tick(T0 + 60_000)
    assert not [a for a in pub.on("alert") if a["kind"] == "kiosk_offline"]
    g.tick(T0 + 101_000)
    off = [a for a in pub.on("alert") if a["kind"] == "kiosk_offline"]
    assert len(off) == 1 and off[0]["context"]["source"] == "silent"
    assert g.store.fleet(T0 + 101_000, 90_000)[0]["online"] is False
    g.tick(T0 + 200_000)
    assert len([a for a in pub.on("alert") if a["kind"] == "kiosk_offline"]) == 1, "raised once"
    feed(g, clock, CP, "k1", "telemetry", protocol.telemetry(6, None, fps=4.0), T0 + 300_000)
    assert g.store.fleet(T0 + 300_000, 90_000)[0]["online"] is True
    assert g.store.alert(off[0]["id"])["state"] == "resolved"


def test_lwt_raises_offline_alert_and_faults_alert(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, _pub = day
    feed(g, clock, CP, "k1", "status", online(), T0)
    res = feed(g, clock, CP, "k1", "status", protocol.status_offline("e1", 1), T0 + MIN)
    assert [a["kind"] for a in res.alerts] == ["kiosk_offline"]
    res = feed(g, clock, CP, "k1", "event", fault(0, T0 + MIN, "records_full", lost=7))
    assert [a["kind"] for a in res.alerts] == ["records_full"]
    res = feed(g, clock, CP, "k1", "event", fault(1, T0 + MIN, "sensor"))
    assert [a["kind"] for a in res.alerts] == ["sensor_fault"]
    res = feed(g, clock, CP, "k1", "event", screening(2, T0 + MIN, "pass", color="red"))
    assert [a["kind"] for a in res.alerts] == ["red_pass"]
    d = g.store.delivery(CP)[0]
    assert d["lost_reported"] == 7 and d["missing"] == 0


def test_retention_purges_personal_records_keeps_aggregates(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, _pub = day
    feed(g, clock, CP, "k1", "event", screening(0, T0, "fever", 38.0, holder="old"), T0)
    feed(g, clock, CP, "k1", "event", screening(1, T0 + 27 * 24 * HOUR_MS, holder="new"), T0 + 27 * 24 * HOUR_MS)
    assert g.store._db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    g.tick(T0 + 29 * 24 * HOUR_MS)  # 08:00 local, before the purge time (03:30)? no: after it -> purged
    assert g.store.trace_holder("old", 0, 2**62) == []
    assert len(g.store.trace_holder("new", 0, 2**62)) == 1
    assert g.store.aggregates(CP, "2026-01-01")["total"]["fever"] == 1, "aggregates stay"
    alert = g.store.alerts()[0]
    assert "holder_ref" not in alert["context"]["code"], "alert context scrubbed"
    assert g.store.delivery(CP)[0]["received"] == 2, "delivery counters stay"


def test_live_summary_published_retained(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, pub = day
    feed(g, clock, CP, "k1", "status", online(), T0)
    feed(g, clock, CP, "k1", "event", screening(0, T0, "pass"), T0)
    g.tick(T0 + 1000)
    summary = [(t, b, r) for t, b, r in pub.sent if t.endswith("/summary")]
    assert summary and summary[0][2] is True
    assert summary[0][1]["counts"]["screened"] == 1 and summary[0][1]["kiosks_online"] == 1
    g.tick(T0 + 2000)
    assert len([t for t, _, _ in pub.sent if t.endswith("/summary")]) == 1, "every 10 s, not every tick"


def test_events_arriving_while_a_report_is_built_keep_the_day_marked(day: tuple[Gateway, ManualClock, FakePublisher]) -> None:
    g, clock, pub = day
    feed(g, clock, CP, "k1", "event", screening(0, T0), T0)
    built_on = g.store.day_event_total(CP, "2026-01-01")
    body = reports.build(g.store, g.local, CP, "2026-01-01", T0 + 2 * MIN)
    feed(g, clock, CP, "k1", "event", screening(1, T0 + MIN), T0 + MIN)  # lands during the build
    g.store.save_report(CP, "2026-01-01", body, T0 + 2 * MIN, built_on_events=built_on)
    assert g.store.dirty_reports() == [(CP, "2026-01-01", 1)]
    g.tick(T0 + 16 * HOUR_MS + 10 * MIN)
    latest = max((r for r in pub.on("report") if r["checkpoint"] == CP), key=lambda r: r["version"])
    assert latest["version"] == 2 and latest["totals"]["screened"] == 2
    assert g.store.dirty_reports() == []
