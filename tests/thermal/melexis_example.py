"""Parse the sensor maker's worked example (data/mlx90640-melexis-example/, a copy of ../shared/data).

Nothing is hand-copied: every number the golden tests use comes out of these CSVs.
"""
from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "data" / "mlx90640-melexis-example"


def _rows(name: str) -> list[list[str]]:
    with open(DATA / name, newline="") as f:
        return list(csv.reader(f))


@dataclass(frozen=True)
class Example:
    eeprom: tuple[int, ...]                   # 832 words 0x2400..0x273F
    frames: tuple[tuple[int, ...], ...]       # two frames of 834 words: RAM 0x0400..0x073F, control, subpage
    params: dict[str, list[str]]              # name -> values as printed in Parameters_extract.csv
    to_subpage0: tuple[float, ...]            # 768 To after frame 0 (0.0 where not computed)
    to_full: tuple[float, ...]                # 768 To after frame 1 (full frame)


def _hex_row(row: list[str], n: int) -> tuple[int, ...]:
    words = tuple(int(c, 16) for c in row[1:1 + n])
    if len(words) != n:
        raise ValueError(f"expected {n} hex words, got {len(words)}")
    return words


def _to_grid(rows: list[list[str]], title: str) -> tuple[float, ...]:
    start = next(i for i, r in enumerate(rows) if len(r) > 1 and r[1].strip() == title)
    out: list[float] = []
    for r in rows[start + 1:start + 25]:
        if not r[1].startswith("Line"):
            raise ValueError(f"unexpected row {r[:3]}")
        out.extend(float(c) for c in r[2:34])
    return tuple(out)


@lru_cache(maxsize=1)
def load() -> Example:
    rows = _rows("Input_data.csv")
    label = {r[1].strip(): i for i, r in enumerate(rows) if len(r) > 1 and r[1].strip()}
    eeprom = _hex_row(rows[label["EEPROM"] + 1], 832)
    frames = tuple(_hex_row(rows[label[f"Frame {k}"] + 1], 834) for k in (0, 1))
    params: dict[str, list[str]] = {}
    for r in _rows("Parameters_extract.csv"):
        if len(r) < 3:
            continue
        m = re.fullmatch(r"\s*(\w+)(?:\[(\d+)\])?\s*=\s*", r[1])
        if not m or not r[2].strip():
            continue
        name, idx = m.group(1), m.group(2)
        values = params.setdefault(name, [])
        if idx is not None and int(idx) != len(values):
            raise ValueError(f"{name}[{idx}] out of order")
        values.append(r[2].strip())
    to_rows = _rows("To_calculation.csv")
    return Example(eeprom, frames, params, _to_grid(to_rows, "To frame 0"), _to_grid(to_rows, "To frame 1"))


def ram_bytes(frame: tuple[int, ...]) -> bytes:
    """The 832 RAM words of an example frame as the big-endian bytes the bus delivers."""
    return b"".join(w.to_bytes(2, "big") for w in frame[:832])


def printed_tolerance(text: str) -> float:
    """Half a unit in the last printed digit: how exactly the sheet states a value."""
    decimals = len(text.split(".")[1]) if "." in text else 0
    return 0.5 * 10.0 ** -decimals
