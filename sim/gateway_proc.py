"""The gateway for a simulated run: `python -m gateway run`'s wiring, on the run's clock.

    python -m sim.gateway_proc --broker-port P --db run/gateway.db --http-port H \
        [--clock-file run/clock] [--trust run/pki/trust.json --secret-file run/pki/district.secret]

With --clock-file the gateway's injectable clock (gateway.clock.Clock) and the verdict
responder's pass-window clock read the simulator's virtual wall clock from that shared file
(sim.vtime.SharedClockReader), so offline detection, alerts, reports, receive times and pass
expiry all run in accelerated time; without it they use the system clock. This is the least
invasive hook available without changing gateway/: the gateway's own `python -m gateway run`
has no clock option (asked for in issue 5's report).
"""
from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway import config as gwconfig
from gateway.clock import Clock, SystemClock
from gateway.http import make_server, serve_in_thread
from gateway.metrics import Metrics
from gateway.service import Gateway
from gateway.verdicts import Responder, build_verifier
from sim.broker import wait_for_port
from sim.services import ROOT, python_env
from sim.vtime import SharedClockReader


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sim.gateway_proc", description=__doc__)
    p.add_argument("--broker-port", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--client-id", default="gateway")
    p.add_argument("--clock-file")
    p.add_argument("--trust")
    p.add_argument("--secret-file")
    p.add_argument("--timezone", default="Asia/Shanghai")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    reader = SharedClockReader(Path(args.clock_file)) if args.clock_file else None
    clock: Clock = reader if reader is not None else SystemClock()
    db = Path(args.db)
    cfg = gwconfig.load(None, overrides={
        "mqtt": {"port": args.broker_port, "client_id": args.client_id},
        "store": {"path": str(db)}, "http": {"port": args.http_port},
        "report": {"directory": str(db.resolve().parent / "reports")}, "site": {"timezone": args.timezone}})
    gateway = Gateway(cfg, clock=clock)
    metrics = Metrics(gateway.ingest, gateway.store.reader, cfg.alerts["offline_after_s"] * 1000, clock.now_ms)
    server = make_server(db, cfg.http["port"], gateway.health, host=cfg.http["host"], gateway=gateway,
                         metrics=metrics.render)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gateway.start()
    ready = getattr(gateway.ingest, "ready", None)
    if ready is not None and not ready.wait(20):  # events published before we subscribe would be dropped
        print("sim gateway: not subscribed after 20 s", flush=True)
    responder = None
    if args.trust:
        verifier = build_verifier(args.trust, None, args.secret_file)
        responder = Responder(verifier, "127.0.0.1", args.broker_port, f"{args.client_id}-verdicts",
                              clock_s=reader.now_s if reader is not None else time.time)
        responder.start()
        responder.ready.wait(20)
        metrics.extra.append(responder.stats.prometheus)
    serve_in_thread(server)  # last: a served port means ingest and verdicts are up
    print(f"sim gateway: broker 127.0.0.1:{args.broker_port}, store {db}, clock "
          f"{'virtual (' + args.clock_file + ')' if reader else 'system'}", flush=True)
    stop.wait()
    if responder is not None:
        responder.stop()
    server.shutdown()
    gateway.stop()
    return 0


def start(run_dir: Path, broker_port: int, http_port: int, clock_file: Path | None, trust: Path | None,
          secret_file: Path | None, timezone: str = "Asia/Shanghai", client_id: str = "gateway") -> subprocess.Popen[bytes]:
    """Start it as a process logging to run_dir/gateway.log; returns once its API serves."""
    cmd = [sys.executable, "-m", "sim.gateway_proc", "--broker-port", str(broker_port),
           "--db", str(run_dir / "gateway.db"), "--http-port", str(http_port), "--timezone", timezone,
           "--client-id", client_id]
    if clock_file is not None:
        cmd += ["--clock-file", str(clock_file)]
    if trust is not None:
        cmd += ["--trust", str(trust)]
    if secret_file is not None:
        cmd += ["--secret-file", str(secret_file)]
    log = open(run_dir / "gateway.log", "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=python_env(), cwd=ROOT)
    log.close()
    wait_for_port(http_port, 30, proc)
    return proc


if __name__ == "__main__":
    sys.exit(main())
