"""protocol.py compiles with mpy-cross 1.29, and the compiled .mpy runs under MicroPython."""
import json
import subprocess
import sys
from pathlib import Path

from tests.micropython_runner import FIRMWARE, run_micropython

SOURCE = FIRMWARE / "kiosk" / "protocol.py"


def test_mpy_cross_compiles_and_the_mpy_runs(tmp_path):
    out = tmp_path / "protocol_mpy.mpy"
    proc = subprocess.run([sys.executable, "-m", "mpy_cross", str(SOURCE), "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    header = out.read_bytes()[:2]
    assert header == b"M\x06"  # .mpy format version 6: MicroPython >= 1.22, incl. 1.29
    script = (
        "import json, protocol_mpy as p\n"
        "assert not p.__file__.endswith('.py'), p.__file__\n"
        "body = p.event('e1', 1, 1, None, 5, 'L1', 'in', 'boot', p.config_hash({}), {'fw': '1', 'board': 'b'})\n"
        "print(json.dumps(p.parse_message(p.topic('cp', 'k', 'event'), p.encode(body))[3]))\n"
        "try:\n"
        "    p.parse_message('screening/v2/cp/k/event', b'{}')\n"
        "except p.ProtocolError as e:\n"
        "    print(json.dumps(e.reason))\n"
    )
    lines = run_micropython(script, extra_path=[Path(tmp_path)], cwd=tmp_path).splitlines()
    assert json.loads(lines[0])["type"] == "boot"
    assert json.loads(lines[1]) == "bad_version"
