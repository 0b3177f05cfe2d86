"""Flash filesystems for simulated boards, with the calls the firmware uses on MicroPython's VFS."""
from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any


class HostFS:
    """A host folder standing in for the board's littlefs root (fast; no power-cut semantics)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, name: str) -> Path:
        path = (self.root / name.lstrip("/")).resolve()
        if self.root.resolve() not in (path, *path.parents):
            raise OSError(2, "outside the filesystem", name)
        return path

    def open(self, name: str, mode: str = "r") -> IO[Any]:
        return open(self._path(name), mode)

    def rename(self, old: str, new: str) -> None:
        os.replace(self._path(old), self._path(new))

    def remove(self, name: str) -> None:
        os.remove(self._path(name))

    def listdir(self, name: str = "") -> list[str]:
        return sorted(os.listdir(self._path(name)))

    def mkdir(self, name: str) -> None:
        os.mkdir(self._path(name))
