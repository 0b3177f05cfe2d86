"""The scanner compiled by mpy-cross runs under MicroPython (compiling every firmware file is
tests/test_firmware_lint.py's job)."""
import subprocess
import sys
from pathlib import Path

from tests.micropython_runner import FIRMWARE, run_micropython


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
