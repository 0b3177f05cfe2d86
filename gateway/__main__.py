"""python -m gateway: the checkpoint gateway service, and a summary of a store."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from gateway.http import make_server, serve_in_thread
from gateway.ingest import Ingest
from gateway.store import Reader, Store
from gateway.summary import format_summary


def run(args: argparse.Namespace) -> int:
    store = Store(args.db)
    ingest = Ingest(store, args.broker_host, args.broker_port, args.client_id, keepalive_s=args.keepalive)
    server = make_server(Path(args.db), args.http_port, lambda: {
        "ok": ingest.stats.connected, "mqtt_connected": ingest.stats.connected,
        "received": ingest.stats.received, "outcome": ingest.stats.outcome})
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    serve_in_thread(server)
    ingest.start()
    print(f"gateway: broker {args.broker_host}:{args.broker_port}, store {args.db}, "
          f"http://127.0.0.1:{server.server_port}/api/summary", flush=True)
    while not stop.wait(args.print_every if args.print_every > 0 else None):
        print(format_summary(Reader(args.db).summary()), flush=True)
    ingest.stop()
    server.shutdown()
    store.close()
    return 0


def summary(args: argparse.Namespace) -> int:
    print(format_summary(Reader(args.db).summary()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="ingest kiosk traffic from the checkpoint broker into SQLite")
    p_run.add_argument("--broker-host", default="127.0.0.1")
    p_run.add_argument("--broker-port", type=int, default=1883)
    p_run.add_argument("--client-id", default="gateway", help="stable id: the broker keeps our session under it")
    p_run.add_argument("--keepalive", type=int, default=30)
    p_run.add_argument("--db", default="gateway.db", help="SQLite file (WAL)")
    p_run.add_argument("--http-port", type=int, default=8080, help="JSON API port on 127.0.0.1 (0: any)")
    p_run.add_argument("--print-every", type=float, default=0, help="print the summary every N s (0: never)")
    p_run.set_defaults(func=run)
    p_sum = sub.add_parser("summary", help="print per-checkpoint counts from a store")
    p_sum.add_argument("--db", default="gateway.db")
    p_sum.set_defaults(func=summary)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
