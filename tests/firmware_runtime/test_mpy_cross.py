"""The firmware modules of this part compile with mpy-cross 1.29 (also at -O2, where asserts vanish),
and the compiled scanner runs under MicroPython."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.micropython_runner import FIRMWARE, run_micropython

MODULES = ["scanner", "config", "commands"]


@pytest.mark.parametrize("name", MODULES)
def test_compiles(name: str, tmp_path: Path) -> None:
    src = FIRMWARE / "kiosk" / (name + ".py")
    text = src.read_text()
    assert "assert " not in text  # data checks must survive -O (STYLE.md)
    for bad in ("import typing", "dataclass", "import enum", "pathlib", "import logging", "import re\n", "=}"):
        assert bad not in text, bad
    for opt in ([], ["-O2"]):
        out = tmp_path / (name + ".mpy")
        proc = subprocess.run([sys.executable, "-m", "mpy_cross", *opt, str(src), "-o", str(out)],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes()[:2] == b"M\x06"


def test_compiled_scanner_runs(tmp_path: Path) -> None:
    pkg = tmp_path / "kiosk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("scanner", "protocol"):
        subprocess.run([sys.executable, "-m", "mpy_cross", str(FIRMWARE / "kiosk" / (name + ".py")),
                        "-o", str(pkg / (name + ".mpy"))], check=True)
    script = ("import sys\nsys.path.insert(0, %r)\nfrom kiosk import scanner\n"
              "assert scanner.__file__.endswith('.mpy'), scanner.__file__\n"
              "s = scanner.Scanner()\nprint(s.feed(b'\\x00\\r\\n11010519491231002X\\r\\n'), s.counts['control'])\n"
              % str(tmp_path))
    out = run_micropython(script, cwd=tmp_path)
    assert out.strip() == "['11010519491231002X'] 1"
