"""python -m sim: run a simulated checkpoint end to end (broker, gateway, kiosks)."""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from gateway.summary import format_summary
from sim.broker import Broker, free_port
from sim.checkpoint import Checkpoint
from sim.services import http_json, start_gateway, stop_process


async def run_checkpoint(args: argparse.Namespace, run_dir: Path, broker_port: int, http_port: int) -> int:
    cp = Checkpoint(args.checkpoint, args.kiosks, args.seed, broker_port, run_dir, keepalive_s=args.keepalive,
                    air_c=args.air, rate_per_h=args.rate, micropython=args.micropython)
    await cp.start()
    traffic = asyncio.create_task(cp.traffic(args.duration))
    started = time.monotonic()
    while not traffic.done():
        await asyncio.wait([traffic], timeout=args.progress_every)
        p = cp.progress()
        elapsed = min(time.monotonic() - started, args.duration)
        print(f"[{elapsed:5.0f}/{args.duration:.0f} s] people {p['people']}, events {p['events']}, "
              f"queued {p['queued']}, kiosks up {p['kiosks_up']}/{args.kiosks}", flush=True)
    await cp.stop()
    expected = cp.ledger_keys()
    deadline = time.monotonic() + 30
    stored = 0
    while time.monotonic() < deadline:  # the gateway is another process: poll its API, bounded
        stored = http_json(http_port, "/api/events/count")["events"]
        offline = sum(1 for k in http_json(http_port, "/api/kiosks") if k["state"] == "offline")
        if stored >= len(expected) and offline == len(cp.kiosks):
            break
        await asyncio.sleep(0.1)
    people = sum(len(k.truth) for k in cp.kiosks)
    fevers = sum(1 for k in cp.kiosks for t in k.truth if t["core_c"] >= 37.3)
    print()
    print(format_summary(http_json(http_port, "/api/summary")))
    print(f"ground truth: {people} people, {fevers} with core >= 37.3 degC")
    print(f"delivery: kiosks created {len(expected)} events, gateway stored {stored}")
    with open(run_dir / "truth.jsonl", "w") as f:
        for k in cp.kiosks:
            for t in k.truth:
                f.write(json.dumps(t) + "\n")
    return 0 if stored == len(expected) else 1


def run(args: argparse.Namespace) -> int:
    if args.scenario:
        return run_scenario_file(args)
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix="checkpoint-"))
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"simulated checkpoint {args.checkpoint}: {args.kiosks} kiosks, {args.duration:.0f} s, seed {args.seed}; "
          f"files in {run_dir}", flush=True)
    http_port = args.http_port or free_port()
    with Broker(run_dir / "broker") as broker:
        gateway = start_gateway(run_dir, broker.port, http_port)
        try:
            return asyncio.run(run_checkpoint(args, run_dir, broker.port, http_port))
        finally:
            stop_process(gateway)


def run_scenario_file(args: argparse.Namespace) -> int:
    from sim import scenario
    from sim.runner import run_scenario

    try:
        sc = scenario.load(args.scenario)
    except (scenario.ScenarioError, OSError) as err:
        print(f"bad scenario: {err}", file=sys.stderr)
        return 2
    if args.seed_given is not None:
        sc.seed = args.seed_given
    run_dir = Path(args.run_dir) if args.run_dir else Path(tempfile.mkdtemp(prefix=f"scenario-{sc.name}-"))
    accelerated = not args.realtime
    print(f"{scenario.describe(sc)}; {'accelerated' if accelerated else 'real time'}; files in {run_dir}", flush=True)
    result = run_scenario(sc, run_dir, accelerated=accelerated, http_port=args.http_port)
    return 0 if result.ok else 1


def compare_cmd(args: argparse.Namespace) -> int:
    from sim import compare

    return compare.main(args.truth, args.db)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a checkpoint: private mosquitto, gateway, kiosks, crowd")
    p.add_argument("--duration", type=float, default=60, help="seconds of traffic (default 60)")
    p.add_argument("--kiosks", type=int, default=4, help="kiosks, two per lane (in and out); default 4")
    p.add_argument("--seed", type=int, default=None, dest="seed_given",
                   help="random seed (default 1; with --scenario: the scenario's own)")
    p.add_argument("--checkpoint", default="cp-demo", help="checkpoint id")
    p.add_argument("--keepalive", type=int, default=10, help="kiosk MQTT keepalive in s")
    p.add_argument("--air", type=float, default=22.0,
                   help="air temperature at the lanes in degC (default 22: inside the calibration data; try -10)")
    p.add_argument("--rate", type=float, default=720, help="arrivals per hour per kiosk (default 720)")
    p.add_argument("--micropython", type=int, default=0, metavar="N",
                   help="run the first N kiosks as real MicroPython processes through the bridge (default 0)")
    p.add_argument("--run-dir", help="where broker, gateway and kiosk files go (default: a new temp dir)")
    p.add_argument("--http-port", type=int, default=0, help="gateway API port (default: a free one)")
    p.add_argument("--progress-every", type=float, default=5.0)
    p.add_argument("--scenario", metavar="FILE", help="run a scenario file (sim/scenarios/*.toml) instead")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--accelerated", action="store_true", help="with --scenario: virtual time (the default)")
    speed.add_argument("--realtime", action="store_true", help="with --scenario: real time")
    p.set_defaults(func=run)
    c = sub.add_parser("compare", help="ground truth (truth.jsonl) against a gateway store: delivery and accuracy")
    c.add_argument("--truth", required=True, help="truth.jsonl written by a scenario run")
    c.add_argument("--db", required=True, help="the gateway's SQLite store (gateway.db)")
    c.set_defaults(func=compare_cmd)
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is run:
        args.seed = 1 if args.seed_given is None else args.seed_given
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
