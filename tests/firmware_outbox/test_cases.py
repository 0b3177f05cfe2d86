"""The outbox/record/nvstate cases of mp_cases.py: each as a CPython test on a host folder, and all
of them again under the real MicroPython 1.29 unix port; the firmware files compile with mpy-cross."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.firmware_outbox import mp_cases
from tests.micropython_runner import FIRMWARE, run_micropython

HERE = Path(__file__).resolve().parent
MODULES = ["outbox", "record", "nvstate"]


@pytest.mark.parametrize("name", mp_cases.CASES)
def test_case_cpython(name: str, tmp_path: Path) -> None:
    getattr(mp_cases, name)(str(tmp_path / "flash"))


def test_cases_under_micropython(tmp_path: Path) -> None:
    script = "import mp_cases\nmp_cases.run_all(%r)\n" % str(tmp_path)
    out = run_micropython(script, extra_path=[HERE], timeout=60)
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failures"] == {}
    assert result["ran"] == len(mp_cases.CASES) >= 15


@pytest.mark.parametrize("name", MODULES)
def test_compiles_with_mpy_cross(name: str, tmp_path: Path) -> None:
    src = FIRMWARE / "kiosk" / (name + ".py")
    text = src.read_text()
    assert "assert " not in text  # data checks must survive -O (STYLE.md)
    for bad in ("import typing", "dataclass", "import enum", "pathlib", "import logging", "os.path", "=}"):
        assert bad not in text, bad
    for opt in ([], ["-O2"]):
        out = tmp_path / (name + ".mpy")
        proc = subprocess.run([sys.executable, "-m", "mpy_cross", *opt, str(src), "-o", str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes()[:2] == b"M\x06"
