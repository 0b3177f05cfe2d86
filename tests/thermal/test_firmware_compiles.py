"""Every firmware file of the thermal chain compiles with mpy-cross 1.29 (the board's compiler)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware" / "kiosk"
FILES = ["mlx90640.py", "sht31.py"]


@pytest.mark.parametrize("name", FILES)
def test_mpy_cross_compiles(name, tmp_path):
    src = FIRMWARE / name
    if not src.exists():
        pytest.fail(f"{src} missing")
    out = tmp_path / (src.stem + ".mpy")
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=xtensawin", "-o", str(out), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
