"""The unmodified firmware App runs under the real MicroPython 1.29 unix port against mosquitto."""
from __future__ import annotations

import json
from pathlib import Path

from gateway.store import Reader
from sim import scene
from tests.services import GatewayProc, wait_until
from tests.micropython_runner import run_micropython

HERE = Path(__file__).resolve().parent
AIR_C = 22.0

SCRIPT = """
import asyncio, json
from unix_board import UnixBoard, SceneSensor
from kiosk.app import App

cfg = {"checkpoint": "cp-upy", "kiosk": "k9", "lane": "L1", "dir": "out", "broker_host": "127.0.0.1",
       "broker_port": PORT, "keepalive_s": 5, "telemetry_s": 1, "warmup_ms": 500}
board = UnixBoard(ROOT, "unix-test", SceneSensor(EMPTY, PERSON, 24), AIR)
with board.fs.open("config.json", "w") as f:
    f.write(json.dumps(cfg))
board.scanner.rx = b"110101199001011237\\r\\n"
app = App(board)

async def main():
    task = asyncio.create_task(app.run())
    for _ in range(200):
        await asyncio.sleep(0.05)
        if any(e["type"] == "screening" for e in board.ledger) and app.outbox.depth() == 0:
            break
    await app.stop()
    await asyncio.sleep(0.1)

asyncio.run(main())
for e in board.ledger:
    print(json.dumps(e))
"""


def frames(scn: scene.Scene, n: int) -> str:
    return repr([[round(t, 3) for t in scene.render(scn, i)[0]] for i in range(n)])


def test_app_runs_under_micropython_and_reaches_the_gateway(tmp_path: Path, gateway: GatewayProc) -> None:
    febrile = scene.random_scene(seed=5, core_c=38.5, air_c=AIR_C, distance_m=0.6)
    empty = scene.Scene(air_c=AIR_C, seed=5)
    script = (SCRIPT.replace("PORT", str(gateway.broker_port)).replace("ROOT", repr(str(tmp_path / "flash")))
              .replace("EMPTY", frames(empty, 3)).replace("PERSON", frames(febrile, 8)).replace("AIR", str(AIR_C)))
    out = run_micropython(script, extra_path=[HERE], timeout=60)
    ledger = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    types = [e["type"] for e in ledger]
    assert types[0] == "boot" and "screening" in types
    screening = next(e for e in ledger if e["type"] == "screening")
    # A 38.5 degC person at 22 degC air, 0.6 m: a fever; the ID card code (no verdict service
    # running: colour "none") was paired with it.
    assert screening["result"] == "fever" and screening["temp_c"] > 37.3
    assert screening["code"]["color"] == "none"
    assert screening["code"]["kind"] == "id" and screening["paired"] is True
    wait_until(lambda: gateway.get("/api/events/count")["events"] == len(ledger), 10, "events stored")
    stored = Reader(tmp_path / "gateway.db").event_keys()
    assert set(stored) == {("cp-upy", "k9", e["epoch"], e["seq"]) for e in ledger}
    kiosk = wait_until(lambda: [k for k in gateway.get("/api/kiosks") if k["state"] == "offline"], 10,
                       "clean goodbye recorded")[0]
    assert kiosk["board"] == "unix-test" and kiosk["epoch"] == ledger[0]["epoch"]
