"""The writer process can die without losing anything; the thread writer does the same job."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gateway.service import Gateway
from kiosk import protocol
from sim.broker import Broker
from tests.gateway.helpers import Publisher, make_config, screening
from tests.services import wait_until

CP = "cp-w"


def publish(port: int, kiosk: str, n: int, rate: float) -> Publisher:
    pub = Publisher(port, kiosk)
    ts = int(time.time() * 1000)
    for seq in range(n):
        pub.publish(protocol.topic(CP, kiosk, protocol.EVENT), protocol.encode(screening(seq, ts + seq)))
        if rate:
            time.sleep(1 / rate)
    return pub


def test_a_killed_writer_process_is_replaced_and_nothing_is_lost(tmp_path: Path, broker: Broker) -> None:
    g = Gateway(make_config(tmp_path, broker.port))
    g.start()
    try:
        assert g.ingest is not None and g.ingest.ready.wait(10)
        pubs: list[Publisher] = []
        t = threading.Thread(target=lambda: pubs.append(publish(broker.port, "k1", 1500, 600)))
        t.start()
        wait_until(lambda: g.store.event_count() > 200, 20, "traffic flowing")
        first = g.ingest.writer._proc  # type: ignore[union-attr]
        first.kill()  # SIGKILL the worker mid-stream: its batches were never acknowledged
        t.join(30)
        wait_until(lambda: g.store.event_count() == 1500, 30, "every event stored after the restart")
        assert g.ingest.writer._proc is not first  # type: ignore[union-attr]
        assert sorted(k[3] for k in g.store.event_keys()) == list(range(1500))
        wait_until(lambda: g.ingest.ready.is_set(), 10, "reconnected")
        pubs[0].close()
    finally:
        g.stop()


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_both_writers_store_and_acknowledge(tmp_path: Path, broker: Broker, writer: str) -> None:
    g = Gateway(make_config(tmp_path, broker.port, store={"writer": writer}))
    g.start()
    try:
        assert g.ingest is not None and g.ingest.ready.wait(10)
        pub = publish(broker.port, "k2", 300, 0)
        wait_until(lambda: g.store.event_count() == 300, 20, "stored")
        wait_until(lambda: g.ingest.stats.outcome.get("stored") == 300 and g.ingest.queue_depth() == 0, 10, "acked")
        assert g.ingest.stats.write_latency_count >= 1
        pub.close()
    finally:
        g.stop()
