"""The README's two commands work in a fresh clone of the repository."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md opens with a sh block"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.skipif(os.environ.get("CHECKPOINT_NESTED") == "1", reason="already inside the clone's test run")
@pytest.mark.timeout(1200)
def test_readme_commands_in_a_fresh_clone(tmp_path: Path) -> None:
    commands = readme_commands()
    assert commands == ["./run-checkpoint", "./run-tests"]
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    # Share this venv (the clone's set-up would otherwise download every package again); CI
    # covers the fresh install, since it runs on a clean clone with no venv at all.
    env = dict(os.environ, CHECKPOINT_VENV=sys.prefix, CHECKPOINT_NESTED="1")
    env.pop("PYTHONPATH", None)
    demo = subprocess.run([commands[0], "--duration", "6"], cwd=clone, env=env, capture_output=True, text=True,
                          timeout=300)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert re.search(r"checkpoint cp-demo: \d+ events, \d+ screened", demo.stdout), demo.stdout
    delivered = re.search(r"kiosks created (\d+) events, gateway stored (\d+)", demo.stdout)
    assert delivered and delivered.group(1) == delivered.group(2), demo.stdout
    tests = subprocess.run([commands[1]], cwd=clone, env=env, capture_output=True,
                           text=True, timeout=1100)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert re.search(r"\d+ passed", tests.stdout), tests.stdout[-2000:]
