"""The gateway's HTTP API (JSON): per-checkpoint counts, kiosks, rejects, health."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from gateway.store import Reader


def make_server(db_path: Path, port: int, health: Callable[[], dict[str, Any]],
                host: str = "127.0.0.1") -> ThreadingHTTPServer:
    routes: dict[str, Callable[[Reader], Any]] = {
        "/api/summary": lambda r: r.summary(),
        "/api/kiosks": lambda r: r.kiosks(),
        "/api/rejects": lambda r: r.rejects(),
        "/api/events/count": lambda r: {"events": r.event_count(), "duplicates": r.stat("duplicates")},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?")[0]
            if path == "/healthz":
                state = health()
                self._send(200 if state.get("ok") else 503, state)
                return
            route = routes.get(path)
            if route is None:
                self._send(404, {"error": "no such endpoint", "endpoints": sorted(routes) + ["/healthz"]})
                return
            reader = Reader(db_path)
            try:
                self._send(200, route(reader))
            finally:
                reader.close()

        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body, indent=1).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: Any) -> None:  # requests are not worth a log line each
            pass

    return ThreadingHTTPServer((host, port), Handler)


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    return thread
