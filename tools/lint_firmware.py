"""python -m tools.lint_firmware: the firmware's own conventions, checked on every file.

- every .py under firmware/ compiles with mpy-cross 1.29 for the ESP32 (xtensawin), also at -O2;
- no `assert` (it vanishes at optimisation level 1: data checks must raise);
- nothing CPython-only: f-string `=` specifiers, typing/dataclasses/enum/pathlib/logging imports;
- no blocking sleeps in the app's own code (time.sleep/sleep_ms block the asyncio loop; drivers
  take an injected sleep_ms for sub-millisecond bus waits, which is allowed);
- only main.py imports `machine`/`network` (hardware reaches the app through the board object).
"""
from __future__ import annotations

import argparse
import ast
import io
import re
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
CPYTHON_ONLY = {"typing", "dataclasses", "enum", "pathlib", "logging", "abc"}
HARDWARE = {"machine", "network"}
HARDWARE_OK = {"main.py"}
DEBUG_SPEC = re.compile(r"\{[^{}:!]*[^=!<>{}]=\s*(![rsa])?(:[^{}]*)?\}")  # f"{x=}", f"{x = !r:>8}"


def firmware_files() -> list[Path]:
    return sorted(FIRMWARE.rglob("*.py"))


def check_source(path: Path) -> list[str]:
    text = path.read_text()
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    problems: list[str] = []
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        return [f"{rel}:{err.lineno}: syntax error: {err.msg}"]
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Assert):
            problems.append(f"{rel}:{line}: assert vanishes under -O; raise an exception instead")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top in CPYTHON_ONLY:
                    problems.append(f"{rel}:{line}: {top} does not exist on MicroPython")
                if top in HARDWARE and path.name not in HARDWARE_OK:
                    problems.append(f"{rel}:{line}: only main.py may import {top}; take it from the board")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (isinstance(owner, ast.Name) and owner.id == "time" and node.func.attr in ("sleep", "sleep_ms")
                    and path.parent.name == "kiosk"):
                problems.append(f"{rel}:{line}: blocking time.{node.func.attr} in app code; await asyncio.sleep")
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        prefix = tok.string[:2].lower()
        if tok.type == tokenize.STRING and "f" in prefix and DEBUG_SPEC.search(tok.string):
            problems.append(f"{rel}:{tok.start[0]}: f-string '=' specifier is CPython-only")
    return problems


def check_compiles(path: Path, outdir: Path) -> list[str]:
    problems = []
    for opt in ([], ["-O2"]):
        out = outdir / (path.stem + ".mpy")
        proc = subprocess.run([sys.executable, "-m", "mpy_cross", "-march=xtensawin", *opt, "-o", str(out), str(path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            problems.append(f"{path}: mpy-cross {' '.join(opt)} failed: {proc.stderr.strip()}")
    return problems


def lint(paths: list[Path] | None = None) -> list[str]:
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths or firmware_files():
            problems += check_source(path)
            problems += check_compiles(path, Path(tmp))
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.lint_firmware", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="firmware files (default: all of firmware/)")
    args = parser.parse_args(argv)
    problems = lint([p.resolve() for p in args.files] or None)
    for p in problems:
        print(p)
    print(f"lint_firmware: {len(problems)} problem(s) in {len(args.files) or len(firmware_files())} file(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
