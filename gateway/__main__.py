"""python -m gateway: the checkpoint gateway service, and a summary of a store.

    python -m gateway run --config /etc/checkpoint-gateway/gateway.toml
    python -m gateway run --broker-port 1883 --db gateway.db --http-port 8080   (flags override the file)
    python -m gateway config --config FILE        print the effective settings, or what is wrong
    python -m gateway summary --db gateway.db
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from gateway import config as gwconfig
from gateway.http import make_server, serve_in_thread
from gateway.metrics import Metrics
from gateway.service import Gateway
from gateway.store import Reader
from gateway.summary import format_summary

# Flag -> (section, key): flags given on the command line override the file and the environment.
FLAGS = {"broker_host": ("mqtt", "host"), "broker_port": ("mqtt", "port"), "client_id": ("mqtt", "client_id"),
         "keepalive": ("mqtt", "keepalive_s"), "db": ("store", "path"), "http_port": ("http", "port"),
         "http_host": ("http", "host"), "reports_dir": ("report", "directory"), "timezone": ("site", "timezone")}


def load_config(args: argparse.Namespace) -> gwconfig.Config:
    overrides: dict[str, dict[str, Any]] = {}
    for flag, (section, key) in FLAGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    if args.db is not None and args.reports_dir is None:
        # With --db and no report folder: reports beside the database (the simulator's run dir).
        overrides.setdefault("report", {})["directory"] = str(Path(args.db).resolve().parent / "reports")
    return gwconfig.load(args.config, overrides=overrides)


def start_extra_services(cfg: gwconfig.Config, gateway: Gateway, metrics: Metrics) -> list[Callable[[], None]]:
    """Services started beside ingest (the verdict responder goes here); -> their stop functions.
    A service may add its Prometheus text with metrics.extra.append(fn)."""
    from gateway import verdicts
    from gateway.verifier import ConfigError

    stoppers: list[Callable[[], None]] = []
    try:  # configured by CHECKPOINT_TRUST_LIST, CHECKPOINT_REVOCATIONS, CHECKPOINT_DISTRICT_SECRET(_FILE)
        responder = verdicts.start_from_env(cfg.mqtt["host"], cfg.mqtt["port"], f"{cfg.mqtt['client_id']}-verdicts")
    except ConfigError as err:  # ingest keeps running; kiosks fall back to manual checks
        logging.getLogger("gateway.verdicts").error("verdicts not served: %s", err)
        responder = None
    if responder is not None:
        metrics.extra.append(responder.stats.prometheus)
        stoppers.append(responder.stop)
    return stoppers


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = load_config(args)
    except gwconfig.ConfigError as err:
        print(f"gateway: bad configuration: {err}", file=sys.stderr)
        return 2
    gateway = Gateway(cfg)
    metrics = Metrics(gateway.ingest, gateway.store.reader, cfg.alerts["offline_after_s"] * 1000, gateway.clock.now_ms)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gateway.start()
    # Serve (the sign that we are up, for the simulator and systemd's neighbours) only once ingest is
    # subscribed: on a fresh broker, events published before our session exists are dropped.
    if gateway.ingest is not None and not gateway.ingest.ready.wait(20):
        logging.getLogger("gateway").warning("not subscribed after 20 s (broker down?); serving anyway")
    stoppers = start_extra_services(cfg, gateway, metrics)
    # Bound only now: a listening socket already accepts connections, before serve_forever.
    try:
        server = make_server(Path(cfg.store["path"]), cfg.http["port"], gateway.health, host=cfg.http["host"],
                             gateway=gateway, metrics=metrics.render)
    except OSError as err:
        print(f"gateway: cannot serve HTTP on {cfg.http['host']}:{cfg.http['port']}: {err}", file=sys.stderr)
        for fn in stoppers:
            fn()
        gateway.stop()
        return 2
    serve_in_thread(server)
    m = cfg.mqtt
    print(f"gateway: broker {m['host']}:{m['port']}, store {cfg.store['path']} (schema v{gateway.store.migrated[1]}"
          f"{', upgraded from v' + str(gateway.store.migrated[0]) if gateway.store.migrated[0] not in (0, gateway.store.migrated[1]) else ''}),"
          f" http://{cfg.http['host']}:{server.server_port}/api/summary", flush=True)
    every = args.print_every if args.print_every and args.print_every > 0 else None
    while not stop.wait(every):
        with Reader(cfg.store["path"]) as r:
            print(format_summary(r.summary()), flush=True)
    for fn in stoppers:
        fn()
    server.shutdown()
    gateway.stop()
    return 0


def show_config(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args)
    except gwconfig.ConfigError as err:
        print(f"bad configuration: {err}", file=sys.stderr)
        return 2
    for section, values in cfg.values.items():
        print(f"[{section}]")
        for key, value in values.items():
            print(f"{key} = {value!r}".replace("'", '"'))
        print()
    return 0


def summary(args: argparse.Namespace) -> int:
    with Reader(args.db) as r:
        print(format_summary(r.summary()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, help_ in (("run", run, "run the gateway service"),
                              ("config", show_config, "print the effective configuration")):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--config", help="TOML file (see gateway/defaults.toml); GATEWAY_<SECTION>_<KEY> overrides")
        p.add_argument("--broker-host")
        p.add_argument("--broker-port", type=int)
        p.add_argument("--client-id", help="stable id: the broker keeps our session under it")
        p.add_argument("--keepalive", type=int)
        p.add_argument("--db", help="SQLite file (WAL)")
        p.add_argument("--http-host")
        p.add_argument("--http-port", type=int, help="JSON API port (0: any)")
        p.add_argument("--reports-dir")
        p.add_argument("--timezone")
        p.add_argument("--print-every", type=float, default=0, help="print the summary every N s (0: never)")
        p.set_defaults(func=func)
    p_sum = sub.add_parser("summary", help="print per-checkpoint counts from a store")
    p_sum.add_argument("--db", default="gateway.db")
    p_sum.set_defaults(func=summary)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
