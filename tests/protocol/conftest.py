"""Shared fixtures for the contract tests: the payload files and one MicroPython run over them."""
import json
from pathlib import Path

import pytest

from kiosk import protocol
from tests.micropython_runner import run_micropython
from tests.protocol import cases

HERE = Path(__file__).resolve().parent
PAYLOADS = HERE / "payloads"
TABLE = cases.load_table(str(PAYLOADS))
CASES = cases.cases(str(PAYLOADS))


def fixture(name):
    return cases.fixture(str(PAYLOADS), name)


def micropython(script):
    """Run `script` under MicroPython with firmware/ and tests/protocol/ (for `cases`) on the path."""
    return run_micropython(script, extra_path=[HERE])


def micropython_json(script):
    """Run a script that prints one JSON value per line; return the decoded values."""
    return [json.loads(line) for line in micropython(script).splitlines() if line.strip()]


@pytest.fixture(scope="session")
def micropython_verdicts():
    """name -> [reason, detail, canonical body] as judged by kiosk.protocol under MicroPython."""
    rows = micropython_json(
        "import json, cases\n"
        "from kiosk import protocol\n"
        "for r in cases.verdicts(%r, protocol):\n"
        "    print(json.dumps(r))\n" % str(PAYLOADS)
    )
    return {r[0]: r[1:] for r in rows}


@pytest.fixture(scope="session")
def cpython_verdicts():
    return {r[0]: r[1:] for r in cases.verdicts(str(PAYLOADS), protocol)}
