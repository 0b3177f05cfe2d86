"""Benchmark: verify -> verdict round trip through a real mosquitto (not a test; prints figures).

    python -m tools.bench_verdicts [--requests 1000] [--kiosks 4] [--rate 0]

Starts a private mosquitto on 127.0.0.1, the verdict responder with a fresh Ed25519 issuer and
district secret, and N simulated kiosks (paho, MQTT 5). Each kiosk sends signed passes one at a
time (a kiosk has one person in front of it) and waits for the verdict; --rate spaces them out.
Prints round-trip p50/p99/max for each combination of mosquitto's `set_tcp_nodelay` (default
false: Nagle's algorithm on the broker's sockets) and TCP_NODELAY on the kiosks' sockets (the
responder always sets it), the time inside the responder, and the verifier alone. Goal: p99 < 100 ms
(the kiosk shows the colour within 300 ms). Nagle anywhere on the path costs ~40 ms per hop (Linux
delayed ACK): all three parties need it off.
"""
from __future__ import annotations

import argparse
import base64
import json
import secrets
import statistics
import tempfile
import threading
import time
from pathlib import Path

from gateway.verdicts import Responder
from gateway.verifier import HolderHasher, SignedPassVerifier
from sim.broker import Broker
from sim.passes import Issuer


class TunedBroker(Broker):
    def __init__(self, workdir: Path, nodelay: bool) -> None:
        super().__init__(workdir, persistence=False)
        self.nodelay = nodelay

    def _write_conf(self) -> None:
        super()._write_conf()
        if self.nodelay:
            with self.conf.open("a") as f:
                f.write("set_tcp_nodelay true\n")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


def run(workdir: Path, nodelay: bool, kiosk_nodelay: bool, requests: int, kiosks: int,
        rate: float) -> dict[str, float]:
    from tests.gateway_verdicts.kiosk_client import KioskClient  # test helper: a kiosk's verify/verdict side

    issuer = Issuer("bench-issuer")
    secret = secrets.token_bytes(32)
    trust = workdir / "trust.json"
    trust.write_text(json.dumps({"keys": {issuer.key_id: base64.b64encode(issuer.public_bytes()).decode()}}))
    verifier = SignedPassVerifier(trust, HolderHasher(secret))
    now = int(time.time())
    raw = issuer.issue("110105194912310021", "health", "green", now - 60, now + 86400)
    t0 = time.perf_counter()
    for _ in range(1000):
        verifier.verify("health", raw, now)
    verify_ms = (time.perf_counter() - t0)
    with TunedBroker(workdir / f"broker-{int(nodelay)}{int(kiosk_nodelay)}", nodelay) as broker:
        responder = Responder(verifier, "127.0.0.1", broker.port)
        responder.start()
        assert responder.ready.wait(5)
        clients = [KioskClient(broker.port, "cp-bench", f"k{i}", nodelay=kiosk_nodelay) for i in range(kiosks)]
        rtts: list[float] = []
        lock = threading.Lock()

        def kiosk_loop(i: int) -> None:
            for n in range(requests // kiosks):
                t = clients[i].send(f"r{n}", "health", raw)
                rtt = clients[i].wait_for(f"r{n}").at - t
                with lock:
                    rtts.append(rtt)
                if rate:
                    time.sleep(kiosks / rate)

        threads = [threading.Thread(target=kiosk_loop, args=(i,)) for i in range(kiosks)]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        snap = responder.stats.snapshot()
        for c in clients:
            c.close()
        responder.stop()
    return {"n": len(rtts), "p50": pct(rtts, 0.5), "p99": pct(rtts, 0.99), "max": max(rtts) * 1000,
            "mean": statistics.fmean(rtts) * 1000, "per_s": len(rtts) / wall, "verify_ms": verify_ms,
            "gw_p50": snap["latency_ms_p50"] or 0.0, "gw_p99": snap["latency_ms_p99"] or 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_verdicts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--kiosks", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0, help="total requests/s across kiosks (0: back to back)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as d:
        for nodelay, kiosk_nodelay in ((False, False), (False, True), (True, False), (True, True)):
            r = run(Path(d), nodelay, kiosk_nodelay, args.requests, args.kiosks, args.rate)
            label = ("broker set_tcp_nodelay " + ("true, " if nodelay else "false,") +
                     " kiosks TCP_NODELAY " + ("on " if kiosk_nodelay else "off"))
            print(f"{label}: {r['n']} verdicts, round trip p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
                  f"max {r['max']:.2f} ms, {r['per_s']:.0f}/s; in the responder p50 {r['gw_p50']:.2f} ms "
                  f"p99 {r['gw_p99']:.2f} ms; verifier alone {r['verify_ms']:.3f} ms per pass", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
