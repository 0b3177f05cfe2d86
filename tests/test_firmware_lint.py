"""Every firmware file keeps the firmware's conventions and compiles with mpy-cross 1.29 (xtensawin)."""
from __future__ import annotations

from pathlib import Path

from tools import lint_firmware


def test_every_firmware_file_passes_the_lint() -> None:
    files = lint_firmware.firmware_files()
    assert {"boot.py", "main.py", "app.py", "protocol.py"} <= {p.name for p in files}
    assert lint_firmware.lint() == []


def test_the_lint_catches_each_convention(tmp_path: Path) -> None:
    bad = tmp_path / "kiosk" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import time\nimport dataclasses\nimport machine\nx = 1\nassert x\n"
                   "print(f'{x=}', f'{x == 1}')\ntime.sleep_ms(5)\ndef broken(:\n")
    assert any("syntax error" in p for p in lint_firmware.lint([bad]))
    bad.write_text(bad.read_text().replace("def broken(:\n", ""))
    problems = lint_firmware.lint([bad])
    for needle in ("dataclasses does not exist", "only main.py may import machine", "assert vanishes",
                   "'=' specifier", "blocking time.sleep_ms"):
        assert sum(needle in p for p in problems) == 1, (needle, problems)
    assert len(problems) == 5
