"""The gateway's HTTP API (JSON), Prometheus /metrics and /healthz.

Reads open a read-only connection per request (WAL: never blocks the writer); operator actions
(acknowledge, config, commands, manual screenings, report re-issue) go through the Gateway.
Binds 127.0.0.1 by default: the dashboard (its own issue) adds the login in front of it.

GET  /api/summary /api/kiosks /api/rejects /api/events/count        (the foundation's)
GET  /api/fleet                                   kiosks: online, heartbeat, fw, board, applied vs desired config
GET  /api/alerts?state=open&checkpoint=CP         /api/alerts/<id>
POST /api/alerts/<id>/ack      {"by", "note"}     /api/alerts/<id>/resolve {"by", "note"}
GET  /api/aggregates?checkpoint=CP&day=YYYY-MM-DD
GET  /api/delivery?checkpoint=CP                  /api/delivery/gaps?checkpoint=&kiosk=&epoch=
GET  /api/dead-letters?limit=N
GET  /api/config/<cp>/<kiosk>                     PUT|POST same {"settings": {...}, "by"}
GET  /api/config-audit?checkpoint=CP
GET  /api/commands                                POST {"checkpoint","kiosk","name","args","ttl_s","by"}
POST /api/manual  {"checkpoint","lane","dir","result","temp_c","operator","holder_ref","color","note","kiosk","ts_ms"}
GET  /api/trace/holder?ref=H&from=MS&to=MS
GET  /api/trace/contacts?checkpoint=&kiosk=&at=MS&minutes=N   or ?alert=<fever alert id>&minutes=N
GET  /api/reports?checkpoint=&day=                /api/reports/<cp>/<day>?version=N
POST /api/reports/<cp>/<day>                      issue (a new version of) that day's report now
GET  /metrics /healthz
"""
from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from gateway.store import Queries, Reader

MAX_BODY = 65536


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _int(q: dict[str, str], name: str, default: int | None = None) -> int:
    v = q.get(name)
    if v is None:
        if default is None:
            raise HttpError(400, f"{name}: required")
        return default
    try:
        return int(v)
    except ValueError:
        raise HttpError(400, f"{name}: must be an integer") from None


def _req(q: dict[str, str], name: str) -> str:
    v = q.get(name)
    if not v:
        raise HttpError(400, f"{name}: required")
    return v


def make_server(db_path: Path, port: int, health: Callable[[], dict[str, Any]], host: str = "127.0.0.1",
                gateway: Any = None, metrics: Callable[[], str] | None = None) -> ThreadingHTTPServer:
    """`gateway` (gateway.service.Gateway) enables the operator actions; without it the API is read-only."""

    def clock_ms() -> int:
        return int(gateway.clock.now_ms()) if gateway is not None else 0

    def offline_ms() -> int:
        return int(gateway.cfg.alerts["offline_after_s"] * 1000) if gateway is not None else 90_000

    def day_default() -> str:
        return str(gateway.local.day(clock_ms())) if gateway is not None else ""

    def contacts(r: Queries, q: dict[str, str]) -> Any:
        minutes = float(q.get("minutes", "10"))
        if not 0 < minutes <= 24 * 60:
            raise HttpError(400, "minutes: 0..1440")
        if q.get("alert"):
            alert = r.alert(q["alert"])
            if alert is None or "event" not in alert["context"]:
                raise HttpError(404, "no such event alert")
            cp, kiosk = alert["context"]["event"][0], alert["context"]["event"][1]
            at = alert["ts_ms"]
        else:
            cp, kiosk, at = _req(q, "checkpoint"), _req(q, "kiosk"), _int(q, "at")
        return {"checkpoint": cp, "kiosk": kiosk, "at": at, "minutes": minutes,
                "passages": r.contacts(cp, kiosk, at, minutes)}

    gets: dict[str, Callable[[Queries, dict[str, str]], Any]] = {
        "/api/summary": lambda r, q: r.summary(),
        "/api/kiosks": lambda r, q: r.kiosks(),
        "/api/rejects": lambda r, q: r.rejects(),
        "/api/events/count": lambda r, q: {"events": r.event_count(), "duplicates": r.stat("duplicates")},
        "/api/fleet": lambda r, q: r.fleet(clock_ms(), offline_ms()),
        "/api/alerts": lambda r, q: r.alerts(q.get("state"), q.get("checkpoint"), _int(q, "limit", 200)),
        "/api/aggregates": lambda r, q: r.aggregates(_req(q, "checkpoint"), q.get("day") or day_default()),
        "/api/delivery": lambda r, q: r.delivery(q.get("checkpoint")),
        "/api/delivery/gaps": lambda r, q: r.seq_gaps(_req(q, "checkpoint"), _req(q, "kiosk"), _req(q, "epoch")),
        "/api/dead-letters": lambda r, q: r.dead_letters(_int(q, "limit", 100)),
        "/api/config-audit": lambda r, q: r.config_audit(q.get("checkpoint")),
        "/api/commands": lambda r, q: r.commands(),
        "/api/trace/holder": lambda r, q: r.trace_holder(_req(q, "ref"), _int(q, "from", 0),
                                                         _int(q, "to", 2**62)),
        "/api/trace/contacts": contacts,
        "/api/reports": lambda r, q: r.reports(q.get("checkpoint"), q.get("day")),
    }
    patterns: list[tuple[str, re.Pattern[str], Callable[..., Any]]] = []

    def route(method: str, pattern: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            patterns.append((method, re.compile("^" + pattern + "$"), fn))
            return fn
        return deco

    def need_gateway() -> Any:
        if gateway is None:
            raise HttpError(503, "read-only API: no gateway service attached")
        return gateway

    @route("GET", r"/api/alerts/([^/]+)")
    def get_alert(r: Queries, _b: Any, q: dict[str, str], alert_id: str) -> Any:
        found = r.alert(alert_id)
        if found is None:
            raise HttpError(404, "no such alert")
        return found

    @route("POST", r"/api/alerts/([^/]+)/(ack|acknowledge|resolve)")
    def post_alert(_r: Queries, b: dict[str, Any], q: dict[str, str], alert_id: str, action: str) -> Any:
        return need_gateway().set_alert(alert_id, action, b.get("by", ""), b.get("note", ""))

    @route("GET", r"/api/config/([^/]+)/([^/]+)")
    def get_config(r: Queries, _b: Any, q: dict[str, str], cp: str, kiosk: str) -> Any:
        return r.desired_config(cp, kiosk) or {"checkpoint": cp, "kiosk": kiosk, "settings": None}

    @route("PUT|POST", r"/api/config/([^/]+)/([^/]+)")
    def put_config(_r: Queries, b: dict[str, Any], q: dict[str, str], cp: str, kiosk: str) -> Any:
        return need_gateway().set_config(cp, kiosk, b.get("settings"), b.get("by"))

    @route("POST", r"/api/commands")
    def post_command(_r: Queries, b: dict[str, Any], q: dict[str, str]) -> Any:
        return need_gateway().send_command(b.get("checkpoint"), b.get("kiosk"), b.get("name"), b.get("args"),
                                           b.get("ttl_s"), b.get("by"))

    @route("POST", r"/api/manual")
    def post_manual(_r: Queries, b: dict[str, Any], q: dict[str, str]) -> Any:
        return need_gateway().record_manual(b)

    @route("GET", r"/api/reports/([^/]+)/(\d{4}-\d{2}-\d{2})")
    def get_report(r: Queries, _b: Any, q: dict[str, str], cp: str, day: str) -> Any:
        found = r.report(cp, day, _int(q, "version", 0) or None)
        if found is None:
            raise HttpError(404, "no such report")
        return found

    @route("POST", r"/api/reports/([^/]+)/(\d{4}-\d{2}-\d{2})")
    def post_report(_r: Queries, _b: Any, q: dict[str, str], cp: str, day: str) -> Any:
        return need_gateway().issue_report(cp, day)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def do_PUT(self) -> None:  # noqa: N802
            self._handle("PUT")

        def _handle(self, method: str) -> None:
            from gateway.service import RequestError  # the service imports us indirectly: late import
            parts = urlsplit(self.path)
            path = parts.path
            q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                body: dict[str, Any] = {}
                if method in ("POST", "PUT"):
                    length = int(self.headers.get("Content-Length") or 0)
                    if length > MAX_BODY:
                        raise HttpError(413, "body too large")
                    raw = self.rfile.read(length) if length else b"{}"
                    try:
                        parsed = json.loads(raw or b"{}")
                    except ValueError:
                        raise HttpError(400, "body is not JSON") from None
                    if not isinstance(parsed, dict):
                        raise HttpError(400, "body must be a JSON object")
                    body = parsed
                if method == "GET" and path == "/healthz":
                    state = health()
                    self._send(200 if state.get("ok") else 503, state)
                    return
                if method == "GET" and path == "/metrics":
                    if metrics is None:
                        raise HttpError(404, "no metrics")
                    self._send_text(200, metrics(), "text/plain; version=0.0.4; charset=utf-8")
                    return
                handler = gets.get(path) if method == "GET" else None
                if handler is not None:
                    self._with_reader(lambda r: handler(r, q))
                    return
                for m, rx, fn in patterns:
                    match = rx.match(path)
                    if match and method in m.split("|"):
                        args = [unquote(g) for g in match.groups()]
                        self._with_reader(lambda r: fn(r, body, q, *args))
                        return
                raise HttpError(404, "no such endpoint")
            except HttpError as err:
                self._send(err.status, {"error": str(err)})
            except RequestError as err:
                self._send(err.status, {"error": str(err), "field": err.field})
            except (ValueError, TypeError) as err:
                self._send(400, {"error": str(err)})

        def _with_reader(self, fn: Callable[[Queries], Any]) -> None:
            reader = Reader(db_path)
            try:
                result = fn(reader)
            finally:
                reader.close()
            self._send(200, result)

        def _send(self, code: int, body: Any) -> None:
            self._send_text(code, json.dumps(body, indent=1, ensure_ascii=False), "application/json; charset=utf-8")

        def _send_text(self, code: int, text: str, ctype: str) -> None:
            data = text.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:  # requests are not worth a log line each
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
