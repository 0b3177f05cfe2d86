"""Real services on 127.0.0.1 for tests: a private mosquitto, the gateway process, and bounded waits."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from sim.broker import Broker, free_port
from sim.services import http_json, start_gateway, stop_process


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Await a condition in another process (broker, gateway), bounded; polling is all they offer."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


async def async_wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


class GatewayProc:
    def __init__(self, run_dir: Path, broker_port: int) -> None:
        self.run_dir = run_dir
        self.broker_port = broker_port
        self.http_port = free_port()
        self.proc = start_gateway(run_dir, broker_port, self.http_port)

    def get(self, path: str) -> Any:
        return http_json(self.http_port, path)

    def restart(self, kill: bool = True) -> None:
        """Kill -9 (no goodbye, no flush) and start again on the same store and session."""
        if kill:
            self.proc.kill()
            self.proc.wait()
        else:
            stop_process(self.proc)
        self.proc = start_gateway(self.run_dir, self.broker_port, self.http_port)

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def gateway(tmp_path: Path, broker: Broker) -> Iterator[GatewayProc]:
    gw = GatewayProc(tmp_path, broker.port)
    wait_until(lambda: gw.get("/healthz").get("ok"), 10, "gateway connected to broker")
    yield gw
    gw.stop()
