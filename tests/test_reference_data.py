"""The vendored reference data is the workspace's shared data, unmodified."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
VENDORED = ROOT / "data"


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "README.md" or p.parent != folder}


def test_vendored_data_is_present() -> None:
    for name in ("mlx90640-melexis-example/Input_data.csv", "face-oral-temp/FLIR_group1.csv"):
        assert (VENDORED / name).stat().st_size > 10_000


@pytest.mark.skipif(not SHARED.exists(), reason="no ../shared/data beside this clone")
def test_vendored_data_matches_the_shared_original() -> None:
    for sub in ("mlx90640-melexis-example", "face-oral-temp"):
        assert digests(VENDORED / sub) == digests(SHARED / sub)
