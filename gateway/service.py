"""The gateway service: ingest, store and timers wired together, and the operator's actions.

`Gateway.tick(now_ms)` does every time-based job (offline detection, repeating fever alerts,
command expiry, daily reports and their re-issues, retention purge, re-publishing what did not
reach the broker); a timer thread calls it every `alerts.tick_s` on the injectable clock, and
tests call it directly with a ManualClock.

Anything the gateway publishes is first stored with `published=0` and marked published on the
broker's PUBACK, so a crash or a broker outage delays it but never loses it.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from gateway import reports
from gateway.clock import DAY_MS, Clock, LocalTime, SystemClock
from gateway.config import Config
from gateway.ingest import Ingest
from gateway.writer import Limits, StoreArgs
from gateway.store import ACKNOWLEDGED, RESOLVED, BatchResult, SQLiteStore, open_store
from kiosk import config as kiosk_config
from kiosk import protocol

log = logging.getLogger("gateway.service")
REISSUE_MIN_MS = 60_000  # a day's report is re-issued at most once a minute while late events trickle in


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                on_done: Callable[[], None] | None = None, expiry_s: int | None = None) -> bool: ...


class RequestError(ValueError):
    """A bad operator request (HTTP 400), with the field it is about."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


def alert_payload(alert: dict[str, Any], local: LocalTime) -> bytes:
    body = {"v": protocol.VERSION, "id": alert["id"], "kind": alert["kind"], "ts": alert["ts_ms"],
            "kiosk": alert["kiosk"], "state": alert["state"], "checkpoint": alert["checkpoint"],
            "time": local.format(alert["ts_ms"]), "repeat": alert.get("repeats", 0), "context": alert["context"]}
    try:
        return bytes(protocol.encode(protocol.validate(protocol.ALERT, body)))
    except protocol.ProtocolError:  # a huge context (a big thermal patch): send it without the patch
        body["context"] = {k: v for k, v in alert["context"].items() if k != "roi"}
        return bytes(protocol.encode(body))


class Gateway:
    def __init__(self, cfg: Config, clock: Clock | None = None, publisher: Publisher | None = None,
                 with_mqtt: bool = True) -> None:
        self.cfg = cfg
        self.clock: Clock = clock or SystemClock()
        self.local = LocalTime(cfg.site["timezone"])
        self.store: SQLiteStore = open_store(
            cfg.store["backend"], cfg.store["path"], local=self.local, dead_letter_max=cfg.store["dead_letter_max"],
            dead_letter_payload_max=cfg.store["dead_letter_payload_max"],
            late_after_ms=cfg.ingest["late_after_s"] * 1000)
        self.ingest: Ingest | None = None
        if with_mqtt:
            m = cfg.mqtt
            self.ingest = Ingest(
                self.store, m["host"], m["port"], m["client_id"], keepalive_s=m["keepalive_s"], clock=self.clock,
                batch_max=cfg.store["batch_max"],
                session_expiry_s=m["session_expiry_s"], receive_maximum=m["receive_maximum"],
                max_outbound_inflight=m["max_outbound_inflight"],
                limits=Limits(cfg.ingest["max_future_s"] * 1000, cfg.ingest["min_ts_ms"]),
                writer=cfg.store["writer"],
                store_args=StoreArgs(str(cfg.store["path"]), cfg.site["timezone"], cfg.store["dead_letter_max"],
                                     cfg.store["dead_letter_payload_max"], cfg.ingest["late_after_s"] * 1000),
                dead_letter_payload_max=cfg.store["dead_letter_payload_max"], on_committed=self._on_committed)
        self.publisher: Publisher | None = publisher or self.ingest
        self.report_dir = Path(cfg.report["directory"])
        self._purged_day: str | None = None
        self._summary_ms = 0
        self._reissued: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self.tick_errors = 0
        self.last_tick_ms = 0

    # ---- lifecycle ----
    def start(self) -> None:
        if self.ingest is not None:
            self.ingest.start()
        self._timer = threading.Thread(target=self._timer_loop, name="gateway-timers", daemon=True)
        self._timer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(10)
        if self.ingest is not None:
            self.ingest.stop()
        self.store.close()

    def _timer_loop(self) -> None:
        while not self._stop.wait(self.cfg.alerts["tick_s"]):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - a failed job is retried next tick, the service goes on
                self.tick_errors += 1
                log.exception("timer tick failed")

    # ---- publishing (store first, mark on PUBACK) ----
    def _publish(self, topic: str, payload: bytes, retain: bool, on_done: Callable[[], None]) -> bool:
        if self.publisher is None:
            return False
        return self.publisher.publish(topic, payload, qos=1, retain=retain, on_done=on_done)

    def publish_alert(self, alert: dict[str, Any]) -> bool:
        topic = protocol.gateway_topic(alert["checkpoint"], protocol.ALERT)
        return self._publish(topic, alert_payload(alert, self.local), False,
                             lambda: self.store.mark_published("alerts", {"id": alert["id"]}))

    def _on_committed(self, result: BatchResult, _batch: list[Any]) -> None:
        for alert in result.alerts:
            self.publish_alert(alert)

    # ---- the timers ----
    def tick(self, now: int | None = None) -> dict[str, Any]:
        with self._tick_lock:
            now = self.clock.now_ms() if now is None else now
            self.last_tick_ms = now
            done: dict[str, Any] = {}
            a = self.cfg.alerts
            for alert in self.store.mark_silent_offline(now, a["offline_after_s"] * 1000):
                self.publish_alert(alert)
                done["offline"] = done.get("offline", 0) + 1
            for alert in self.store.due_fever_repeats(now, a["fever_repeat_s"] * 1000):
                self.publish_alert(alert)
                done["repeats"] = done.get("repeats", 0) + 1
            expired = self.store.expire_commands(now)
            if expired:
                done["commands_expired"] = expired
            done["reports"] = self._reports_due(now)
            purged = self._purge_due(now)
            if purged:
                done["purged"] = purged
            self._republish()
            self._summary_due(now)
            return done

    def _summary_due(self, now: int) -> None:
        every = self.cfg.summary["every_s"] * 1000
        if not every or now - self._summary_ms < every or self.publisher is None:
            return
        self._summary_ms = now
        today = self.local.day(now)
        online: dict[str, int] = {}
        for k in self.store.fleet(now, self.cfg.alerts["offline_after_s"] * 1000):
            online[k["checkpoint"]] = online.get(k["checkpoint"], 0) + int(k["online"])
        for cp in self.store.checkpoints():
            day = self.store.aggregates(cp, today)
            body = {"v": protocol.VERSION, "ts": now, "day": today, "counts": day["total"],
                    "lanes": day["lanes"], "kiosks_online": online.get(cp, 0)}
            self.publisher.publish(protocol.gateway_topic(cp, protocol.SUMMARY),
                                   bytes(protocol.encode(protocol.validate(protocol.SUMMARY, body))), qos=1, retain=True)

    def _republish(self) -> None:
        if self.publisher is None or (self.ingest is not None and not self.ingest.ready.is_set()):
            return
        waiting = self.ingest.inflight() if self.ingest is not None else 0
        if waiting:
            return  # let what is in flight complete first: no duplicate sends every tick
        for alert in self.store.unpublished_alerts():
            self.publish_alert(alert)
        for cfg in self.store._all("SELECT checkpoint, kiosk, settings FROM desired_config WHERE published=0"):
            self._publish_config(cfg["checkpoint"], cfg["kiosk"], json.loads(cfg["settings"]))
        for r in self.store._all("SELECT checkpoint, day, version, body FROM reports WHERE published=0"
                                 " ORDER BY issued_ms LIMIT 50"):
            self._publish_report(json.loads(r["body"]))

    def _reports_due(self, now: int) -> list[str]:
        today = self.local.day(now)
        issued: list[str] = []
        if now >= self.local.at(today, self.cfg.hhmm("report")):
            day = self.local.previous_day(today)
            for cp in self.store.checkpoints():
                if (cp, day) not in self.store._reported:
                    self.issue_report(cp, day, now)
                    issued.append(f"{cp}/{day}")
        for cp, day, _late in self.store.dirty_reports():
            last = self._reissued.get((cp, day), 0)
            if now - last >= REISSUE_MIN_MS:
                self._reissued[(cp, day)] = now
                self.issue_report(cp, day, now)
                issued.append(f"{cp}/{day}")
        return issued

    def issue_report(self, checkpoint: str, day: str, now: int | None = None) -> dict[str, Any]:
        now = self.clock.now_ms() if now is None else now
        # Built outside a write transaction (the writer process goes on); an event committed while
        # it was built keeps the day marked, so the next tick issues another version.
        total = self.store.day_event_total(checkpoint, day)
        body = reports.build(self.store, self.local, checkpoint, day, now, self.cfg.report["gap_min_s"] * 1000)
        body["version"] = self.store.save_report(checkpoint, day, body, now, built_on_events=total)
        try:
            reports.write_files(body, self.report_dir)
        except OSError:
            log.exception("could not write report files for %s %s (kept in the store)", checkpoint, day)
        self._publish_report(body)
        return body

    def _publish_report(self, body: dict[str, Any]) -> None:
        key = {"checkpoint": body["checkpoint"], "day": body["day"], "version": body["version"]}
        self._publish(protocol.gateway_topic(body["checkpoint"], protocol.REPORT), reports.publishable(body), False,
                      lambda: self.store.mark_published("reports", key))

    def _purge_due(self, now: int) -> dict[str, int] | None:
        today = self.local.day(now)
        if self._purged_day == today or now < self.local.at(today, self.cfg.hhmm("retention")):
            return None
        self._purged_day = today
        return self.purge(now)

    def purge(self, now: int | None = None) -> dict[str, int]:
        now = self.clock.now_ms() if now is None else now
        return self.store.purge(now - self.cfg.retention["days"] * DAY_MS)

    # ---- operator actions (HTTP) ----
    def set_alert(self, alert_id: str, action: str, who: str, note: str) -> dict[str, Any]:
        state = {"ack": ACKNOWLEDGED, "acknowledge": ACKNOWLEDGED, "resolve": RESOLVED}.get(action)
        if state is None:
            raise RequestError("action", "ack or resolve")
        if not isinstance(who, str) or not who.strip():
            raise RequestError("by", "name who acknowledges or resolves")
        if not isinstance(note, str):
            raise RequestError("note", "must be text")
        try:
            alert = self.store.set_alert_state(alert_id, state, who.strip()[:64], note[:1000], self.clock.now_ms())
        except KeyError:
            raise RequestError("id", f"no alert {alert_id}", 404) from None
        except ValueError as err:
            raise RequestError("state", str(err), 409) from None
        self.publish_alert(alert)  # the new state goes out too, so every dashboard stops ringing
        return alert

    def set_config(self, checkpoint: str, kiosk: str, settings: Any, who: Any) -> dict[str, Any]:
        """Desired config for one kiosk: validated by the firmware's own schema (thresholds within
        kiosk.screening.BOUNDS), audited, published retained."""
        for name, value in (("checkpoint", checkpoint), ("kiosk", kiosk)):
            try:
                protocol.check_id(value, name)
            except protocol.ProtocolError as err:
                raise RequestError(name, err.detail) from None
        if not isinstance(who, str) or not who.strip():
            raise RequestError("by", "name who changes the config")
        if not isinstance(settings, dict):
            raise RequestError("settings", "must be an object")
        _cfg, errors = kiosk_config.validate(settings, remote=True)
        if errors:
            raise RequestError("settings", "; ".join(errors))
        try:
            protocol.config_message(settings)
            expected = kiosk_config.expected_hash(settings)
        except (protocol.ProtocolError, kiosk_config.ConfigError) as err:
            raise RequestError("settings", str(err)) from None
        change = self.store.set_desired_config(checkpoint, kiosk, settings, expected, who.strip()[:64],
                                               self.clock.now_ms())
        self._publish_config(checkpoint, kiosk, settings)
        if change["alert"]:
            self.publish_alert(change["alert"])
        return change

    def _publish_config(self, checkpoint: str, kiosk: str, settings: dict[str, Any]) -> bool:
        payload = protocol.encode(protocol.config_message(settings))
        return self._publish(protocol.topic(checkpoint, kiosk, protocol.CONFIG), payload, True,
                             lambda: self.store.mark_published("desired_config", {"checkpoint": checkpoint,
                                                                                   "kiosk": kiosk}))

    def send_command(self, checkpoint: str, kiosk: str, name: Any, args: Any, ttl_s: Any, who: Any) -> dict[str, Any]:
        if not isinstance(who, str) or not who.strip():
            raise RequestError("by", "name who sends the command")
        ttl = self.cfg.commands["default_ttl_s"] if ttl_s is None else ttl_s
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 7 * 86400:
            raise RequestError("ttl_s", "1..604800 seconds")
        now = self.clock.now_ms()
        try:
            topic = protocol.topic(checkpoint, kiosk, protocol.CMD)
            cmd = protocol.command("c" + os.urandom(8).hex(), name, {} if args is None else args, now + ttl * 1000)
        except protocol.ProtocolError as err:
            raise RequestError(err.reason, err.detail or str(err)) from None
        self.store.add_command(cmd, checkpoint, kiosk, who.strip()[:64], now)
        sent = self._publish(topic, protocol.encode(cmd), False,
                             lambda: self.store.mark_published("commands", {"id": cmd["id"]}))
        return dict(cmd, sent=sent)

    def record_manual(self, req: dict[str, Any]) -> dict[str, Any]:
        now = self.clock.now_ms()
        try:
            checkpoint = protocol.check_id(req.get("checkpoint"), "checkpoint")
            lane = protocol.check_id(req.get("lane"), "lane")
        except protocol.ProtocolError as err:
            raise RequestError("checkpoint/lane", err.detail) from None
        ts = req.get("ts_ms", now)
        if not isinstance(ts, int) or isinstance(ts, bool) or not now - 7 * DAY_MS <= ts <= now + 60_000:
            raise RequestError("ts_ms", "Unix ms within the last 7 days")
        result = req.get("result")
        if not isinstance(result, str):
            raise RequestError("result", "one of " + ", ".join(protocol.MANUAL_RESULTS))
        operator = req.get("operator")
        if not isinstance(operator, str) or not operator.strip():
            raise RequestError("operator", "name who screened")
        temp = req.get("temp_c")
        if temp is not None and (not isinstance(temp, (int, float)) or isinstance(temp, bool) or not 25 <= temp <= 45):
            raise RequestError("temp_c", "a body temperature 25..45 degC, or null")
        try:
            body, written = self.store.record_manual(
                checkpoint, lane, req.get("dir", "in"), result, temp, operator.strip()[:64],
                ts, now, holder_ref=req.get("holder_ref"), color=req.get("color", "none"),
                note=str(req.get("note", ""))[:500], kiosk_hint=req.get("kiosk"))
        except protocol.ProtocolError as err:
            raise RequestError(err.reason, err.detail or str(err)) from None
        for alert in written.alerts:
            self.publish_alert(alert)
        return {"event": [checkpoint, protocol.GATEWAY_ID, body["epoch"], body["seq"]], "body": body,
                "alerts": [a["id"] for a in written.alerts]}

    # ---- health ----
    def health(self) -> dict[str, Any]:
        st = self.ingest.stats if self.ingest is not None else None
        connected = bool(st and st.connected)
        depth = self.ingest.queue_depth() if self.ingest is not None else 0
        stale_writer = bool(self.ingest and depth and time.monotonic() - (st.last_commit_monotonic if st else 0) > 30)
        return {"ok": connected and not stale_writer, "mqtt_connected": connected,
                "received": st.received if st else 0, "outcome": dict(st.outcome) if st else {},
                "writer_queue": depth, "writer_stalled": stale_writer, "tick_errors": self.tick_errors,
                "schema": self.store.migrated[1], "clock_ms": self.clock.now_ms()}
