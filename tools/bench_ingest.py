"""Benchmark (not a test): gateway ingest into SQLite vs a bare paho subscriber, same broker, same run.

    python tools/bench_ingest.py [--events 20000] [--rate 200] [--seconds 10]

1. Throughput. A private mosquitto with the shipped deploy/mosquitto.conf; two persistent
   MQTT 5 sessions subscribed to the events (a bare paho subscriber that only counts, and the
   gateway's); both disconnect; kiosk publishers put N events (~300 B, QoS 1) into both queues.
   Then each session drains its queue alone and we time it: the bare subscriber's receive rate,
   and the gateway's rate to durable rows (validated, deduplicated, counted, committed with
   synchronous=FULL, then PUBACKed). Drained backlogs are what "sustained" means: no publisher
   pacing in the figure.
2. Latency. The gateway live, one kiosk publishing at --rate events/s for --seconds: from the
   kiosk's publish() call to the commit that made the row durable; p50/p99/max.
"""
from __future__ import annotations

import argparse
import getpass
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "firmware", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from gateway import config as gwconfig  # noqa: E402
from gateway.service import Gateway  # noqa: E402
from kiosk import protocol  # noqa: E402
from sim.broker import Broker  # noqa: E402

DEPLOY_CONF = ROOT / "deploy" / "mosquitto.conf"
CP = "cp-bench"
DROP = ("listener", "persistence_location", "log_dest", "user", "pid_file", "include_dir", "persistence ",
        "autosave_interval")


class DeployBroker(Broker):
    """mosquitto with the shipped configuration, on a free port in a private folder."""

    def _write_conf(self) -> None:
        kept = [line for line in DEPLOY_CONF.read_text().splitlines()
                if line.strip() and not line.startswith("#") and not line.startswith(DROP)]
        kept += [f"listener {self.port} 127.0.0.1", f"user {getpass.getuser()}", f"log_dest file {self.log}",
                 "persistence true", f"persistence_location {self.workdir}/", "autosave_interval 10"]
        self.conf.write_text("\n".join(kept) + "\n")


def event_payload(kiosk_no: int, seq: int, ts: int, extra: dict[str, Any] | None = None) -> bytes:
    code = protocol.code_info("health", "green", f"{kiosk_no:02d}{seq:08d}" + "ab" * 10)
    fields: dict[str, Any] = {"result": "pass", "temp_c": 36.6, "skin_c": 35.1, "ambient_c": 21.5,
                              "distance_cm": 62, "code": code, "paired": True}
    if extra:
        fields.update(extra)
    return bytes(protocol.encode(protocol.event("e1", seq, 3, ts, 100_000 + seq, "L1", "in", "screening",
                                                "abcd1234", fields)))


def session(port: int, client_id: str, on_message: Any = None) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    props.ReceiveMaximum = 1000
    if on_message:
        c.on_message = on_message
    c.connect("127.0.0.1", port, clean_start=False, properties=props)
    return c


def publish_all(port: int, n: int, kiosks: int = 4) -> None:
    def one(k: int) -> None:
        done = threading.Event()
        acked = [0]
        count = n // kiosks + (1 if k < n % kiosks else 0)

        def on_publish(*_a: Any) -> None:
            acked[0] += 1
            if acked[0] == count:
                done.set()
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub{k}", protocol=paho.MQTTv5)
        c.on_publish = on_publish
        c.max_inflight_messages_set(200)
        c.connect("127.0.0.1", port)
        c.loop_start()
        ts = int(time.time() * 1000)
        topic = protocol.topic(CP, f"k{k}", protocol.EVENT)
        for seq in range(count):
            info = c.publish(topic, event_payload(k, seq, ts), qos=1)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise RuntimeError(paho.error_string(info.rc))
        if not done.wait(120):
            raise RuntimeError("publishes not acknowledged")
        c.disconnect()
        c.loop_stop()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(kiosks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def bare_drain(port: int, n: int) -> float:
    got = [0]
    done = threading.Event()

    def on_message(*_a: Any) -> None:
        got[0] += 1
        if got[0] >= n:
            done.set()
    c = session(port, "bare", on_message)
    t0 = time.perf_counter()
    c.loop_start()
    if not done.wait(300):
        raise RuntimeError(f"bare subscriber got {got[0]} of {n}")
    took = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return n / took


def register_bare(port: int) -> None:
    c = session(port, "bare")
    c.loop_start()
    ok = threading.Event()
    c.on_subscribe = lambda *_a: ok.set()
    c.subscribe(protocol.subscription(channel=protocol.EVENT), qos=1)
    ok.wait(10)
    c.disconnect()
    c.loop_stop()


WRITER = "process"


def make_gateway(workdir: Path, port: int, db: str) -> Gateway:
    cfg = gwconfig.load(None, env={}, overrides={
        "mqtt": {"port": port, "client_id": "gateway-bench"}, "http": {"port": 0},
        "store": {"path": str(workdir / db), "writer": WRITER}, "report": {"directory": str(workdir / "reports")}})
    return Gateway(cfg)


def stored(g: Gateway) -> int:
    assert g.ingest is not None
    return g.ingest.stats.outcome.get("stored", 0)


def throughput(workdir: Path, port: int, n: int, db: str) -> tuple[float, float]:
    register_bare(port)
    g = make_gateway(workdir, port, db)
    g.start()
    assert g.ingest is not None and g.ingest.ready.wait(10)
    g.stop()  # our session exists now; its queue fills while we are away
    publish_all(port, n)
    bare = bare_drain(port, n)
    g = make_gateway(workdir, port, db)
    t0 = time.perf_counter()
    g.start()
    while stored(g) < n:
        time.sleep(0.005)
        if time.perf_counter() - t0 > 300:
            raise RuntimeError(f"gateway stored {stored(g)} of {n}")
    gw = n / (time.perf_counter() - t0)
    g.stop()
    return bare, gw


def latency(workdir: Path, port: int, rate: float, seconds: float) -> list[float]:
    g = make_gateway(workdir, port, "latency.db")
    lat: list[float] = []
    assert g.ingest is not None
    ingest = g.ingest
    original = ingest.on_committed

    def committed(result: Any, batch: list[Any]) -> None:
        now = time.time()
        for _mid, _qos, _arrived, payload in batch:
            if b"bench_t" in payload:
                lat.append(now - json.loads(payload)["bench_t"])
        if original:
            original(result, batch)
    ingest.on_committed = committed
    g.start()
    assert ingest.ready.wait(10)
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id="pub-lat", protocol=paho.MQTTv5)
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = protocol.topic(CP, "klat", protocol.EVENT)
    n = int(rate * seconds)
    start = time.perf_counter()
    for seq in range(n):
        target = start + seq / rate
        delay = target - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        info = c.publish(topic, event_payload(9, seq, int(time.time() * 1000), {"bench_t": time.time()}), qos=1)
        if info.rc != paho.MQTT_ERR_SUCCESS:
            raise RuntimeError(paho.error_string(info.rc))
    deadline = time.perf_counter() + 30
    while len(lat) < n and time.perf_counter() < deadline:
        time.sleep(0.01)
    c.disconnect()
    c.loop_stop()
    g.stop()
    return lat


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--writer", choices=("process", "thread"), default="process", help="store.writer")
    args = ap.parse_args(argv)
    global WRITER
    WRITER = args.writer
    with tempfile.TemporaryDirectory() as tmp, DeployBroker(Path(tmp) / "broker") as broker:
        work = Path(tmp)
        size = len(event_payload(0, 0, int(time.time() * 1000)))
        print(f"mosquitto (deploy/mosquitto.conf) on 127.0.0.1:{broker.port}; {args.events} events of {size} B, QoS 1;"
              f" gateway store.writer={WRITER}")
        ratios = []
        for r in range(args.rounds):
            bare, gw = throughput(work, broker.port, args.events, f"throughput{r}.db")
            ratios.append(gw / bare)
            print(f"round {r + 1}: bare paho subscriber {bare:8.0f} msg/s | gateway into SQLite (FULL sync, acked)"
                  f" {gw:8.0f} events/s | ratio {gw / bare:.2f}")
        print(f"throughput ratio gateway/bare: {statistics.mean(ratios):.2f} (goal >= 0.7)")
        lat = latency(work, broker.port, args.rate, args.seconds)
        ms = [x * 1000 for x in lat]
        print(f"latency publish -> durable at {args.rate:.0f} events/s over {args.seconds:.0f} s ({len(ms)} events):"
              f" p50 {pct(ms, 50):.1f} ms, p99 {pct(ms, 99):.1f} ms, max {max(ms):.1f} ms (goal p99 <= 50 ms)")
        print(json.dumps({"bare_msg_s": round(bare), "gateway_events_s": round(gw),
                          "ratio": round(statistics.mean(ratios), 2), "p50_ms": round(pct(ms, 50), 1),
                          "p99_ms": round(pct(ms, 99), 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
