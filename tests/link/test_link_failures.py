"""The kiosk's MQTT link under broker trouble: a broker that stops answering, and a broker that
refuses events (PUBACK reason 135). The kiosk keeps screening; nothing is lost or released early."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np

from kiosk import protocol
from sim.broker import Broker
from sim.checkpoint import Checkpoint, KioskSim
from sim.scene import random_person
from tests.services import async_wait_until

KEEPALIVE_S = 2


def events(k: KioskSim, etype: str) -> list[dict[str, Any]]:
    return [e for e in k.board.ledger if e["type"] == etype]


async def one_passage(k: KioskSim, seed: int) -> None:
    """One person steps up, is screened, and leaves (awaited, not timed)."""
    before = len(events(k, "screening"))
    k.view.enter(random_person(np.random.default_rng(seed), 36.8, distance_m=0.6))
    await async_wait_until(lambda: len(events(k, "screening")) > before, 15, "a screening")
    k.view.leave()
    await asyncio.sleep(1.0)  # the lane must read empty before the next person counts as new


def test_frozen_broker_never_freezes_the_kiosk(tmp_path: Path) -> None:
    with Broker(tmp_path / "broker") as broker:
        cp = Checkpoint("cp-link", 1, seed=8, broker_port=broker.port, run_dir=tmp_path, keepalive_s=KEEPALIVE_S,
                        warmup_ms=500)
        k = cp.kiosks[0]

        async def scenario() -> None:
            await cp.start()
            await async_wait_until(lambda: k.app.ui.state == "ready" and not k.app.outbox.depth(), 15,
                                   "warmed up, online, drained")
            broker.freeze()  # no PUBACK, no PINGRESP, sockets open: the worst kind of outage
            try:
                for i in range(2):
                    await one_passage(k, i)  # screening goes on while the link hangs
                await async_wait_until(lambda: not k.app.link.connected, 3 * KEEPALIVE_S, "link noticed the silence")
                assert k.app.outbox.depth() >= 2, "unacknowledged events stay queued"
            finally:
                broker.thaw()
            await async_wait_until(lambda: k.app.link.connected and not k.app.outbox.depth(), 60,
                                   "reconnected and drained")
            await cp.stop()

        asyncio.run(scenario())
    assert k.app.link.sessions >= 2
    assert len(events(k, "screening")) >= 2


def test_refused_events_are_kept_and_reported(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    # Anonymous clients may read everything and publish status/telemetry, but not events.
    acl.write_text("topic read screening/#\ntopic write screening/+/+/+/status\ntopic write screening/+/+/+/telemetry\n")
    with Broker(tmp_path / "broker", extra_conf=[f"acl_file {acl}"]) as broker:
        cp = Checkpoint("cp-acl", 1, seed=9, broker_port=broker.port, run_dir=tmp_path, warmup_ms=500)
        k = cp.kiosks[0]

        async def scenario() -> None:
            await cp.start()
            await async_wait_until(lambda: k.app.ui.state == "ready", 15, "warmed up and online")
            await async_wait_until(lambda: events(k, "fault"), 10, "a link fault")
            await one_passage(k, 3)  # the kiosk keeps screening with its events refused
            await cp.stop(drain_s=1)

        asyncio.run(scenario())
    fault = events(k, "fault")[0]
    assert fault["part"] == "link" and "135" in fault["detail"], fault
    # Nothing was released: every event the kiosk made is still in its outbox.
    assert k.app.outbox.depth() == len(k.board.ledger)
    assert {e["type"] for e in k.board.ledger} >= {"boot", "fault", "screening"}
    assert protocol.FAULT in {e["type"] for e in k.board.ledger}
