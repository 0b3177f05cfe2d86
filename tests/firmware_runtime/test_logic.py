"""The pure-logic cases of mp_cases.py (scanner framing, config validation, commands): each as a
CPython test, and all of them again under the real MicroPython 1.29 unix port."""
import json
from pathlib import Path

import pytest

from tests.firmware_runtime import mp_cases
from tests.micropython_runner import run_micropython

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("name", mp_cases.CASES)
def test_case_cpython(name: str, tmp_path: Path) -> None:
    getattr(mp_cases, name)(str(tmp_path / "flash"))


def test_cases_under_micropython(tmp_path: Path) -> None:
    script = "import mp_cases\nmp_cases.run_all(%r)\n" % str(tmp_path)
    out = run_micropython(script, extra_path=[HERE], timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failures"] == {}
    assert result["ran"] == len(mp_cases.CASES) >= 25
