"""Start the checkpoint's services as real processes: the gateway beside a private broker."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from sim.broker import wait_for_port

ROOT = Path(__file__).resolve().parents[1]


def python_env() -> dict[str, str]:
    """Environment for a child Python that must import kiosk (firmware/) and the repo's packages."""
    path = [str(ROOT / "firmware"), str(ROOT)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))


def http_json(port: int, path: str) -> Any:
    """GET a JSON endpoint; error statuses (503 from /healthz) still return their JSON body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return json.loads(err.read())


def start_gateway(run_dir: Path, broker_port: int, http_port: int, client_id: str = "gateway",
                  keepalive_s: int = 30) -> subprocess.Popen[bytes]:
    """`python -m gateway run` in its own process, logging to run_dir/gateway.log; returns once it serves."""
    log = open(run_dir / "gateway.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "--broker-port", str(broker_port),
                             "--db", str(run_dir / "gateway.db"), "--http-port", str(http_port),
                             "--client-id", client_id, "--keepalive", str(keepalive_s)],
                            stdout=log, stderr=subprocess.STDOUT, env=python_env(), cwd=ROOT)
    log.close()
    wait_for_port(http_port, 20, proc)
    return proc


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
