"""Simulated NOR flash with littlefs v2 on it, as MicroPython mounts it on an ESP32.

`FlashDevice` is the block device: a bytearray with program/erase counters and a power-cut
switch. `cut_at(n)` makes the n-th program or erase from now the last thing the chip does: that
operation lands only partly (a program writes a prefix of its data, an erase leaves the block
half erased, as a real chip losing power mid-operation can), and every later program or erase
fails with an I/O error, so the running code sees the flash die. `image()` is the flash as it
was at the cut; `FlashDevice(image=...)` "reboots" on it.

`LittleFSFlash` mounts littlefs-python on a device with MicroPython's esp32 settings (4 KiB
blocks, 32-byte read/prog, 128-byte cache, block_cycles 100) and offers the board fs API the
firmware uses: open/rename/remove/listdir/mkdir/stat/statvfs, with OSError for every failure,
like MicroPython's VFS.
"""
from __future__ import annotations

import errno
import random
from typing import Any, Callable

from littlefs import LittleFS, LittleFSError, UserContext, lfs

BLOCK_SIZE = 4096
MIB = 1024 * 1024
LFS_ERR_IO = -5

_O_RDONLY, _O_WRONLY, _O_RDWR = 1, 2, 3
_O_CREAT, _O_TRUNC, _O_APPEND = 0x100, 0x400, 0x800


class PowerCut(Exception):
    """Raised by FlashDevice.check() once the power is gone."""


class FlashDevice(UserContext):
    def __init__(self, size: int = 2 * MIB, block_size: int = BLOCK_SIZE, image: bytes | None = None,
                 seed: int = 0) -> None:
        if image is not None:
            super().__init__(buffer=bytearray(image))
        else:
            super().__init__(buffsize=size)
        self.block_size = block_size
        self.block_count = len(self.buffer) // block_size
        self.progs = 0
        self.erases = 0
        self.reads = 0
        self.dead = False
        self._cut_at: int | None = None
        self._cut_kind = "any"
        self._rng = random.Random(seed)
        self.on_cut: Callable[[], None] | None = None
        self.cut_op: str | None = None

    # -- the power switch --
    def ops(self, kind: str = "any") -> int:
        return {"any": self.progs + self.erases, "prog": self.progs, "erase": self.erases}[kind]

    def cut_at(self, n: int, kind: str = "any") -> None:
        """The n-th (1-based) program/erase/either counted from now is cut short."""
        self._cut_kind = kind
        self._cut_at = self.ops(kind) + n

    def image(self) -> bytes:
        return bytes(self.buffer)

    def _cutting(self, kind: str) -> bool:
        if self._cut_at is None or self._cut_kind not in ("any", kind):
            return False
        return self.ops(self._cut_kind) >= self._cut_at

    def _die(self, what: str) -> None:
        self.dead = True
        self.cut_op = what
        if self.on_cut is not None:
            self.on_cut()

    # -- littlefs callbacks (errors are returned as codes: littlefs-python ignores raises) --
    def read(self, cfg: Any, block: int, off: int, size: int) -> bytearray:
        self.reads += 1
        start = block * cfg.block_size + off
        return self.buffer[start:start + size]

    def prog(self, cfg: Any, block: int, off: int, data: bytes) -> int:
        if self.dead:
            return LFS_ERR_IO
        self.progs += 1
        start = block * cfg.block_size + off
        if self._cutting("prog"):
            # NOR programming only clears bits: a cut leaves a prefix written and one byte
            # with some of its bits programmed.
            keep = self._rng.randrange(len(data) + 1)
            self.buffer[start:start + keep] = data[:keep]
            if keep < len(data):
                self.buffer[start + keep] &= data[keep] | self._rng.randrange(256)
            self._die("prog")
            return LFS_ERR_IO
        self.buffer[start:start + len(data)] = data
        return 0

    def erase(self, cfg: Any, block: int) -> int:
        if self.dead:
            return LFS_ERR_IO
        self.erases += 1
        start = block * cfg.block_size
        if self._cutting("erase"):
            done = self._rng.randrange(cfg.block_size + 1)
            self.buffer[start:start + done] = b"\xff" * done
            if done < cfg.block_size:
                self.buffer[start + done] = self._rng.randrange(256)  # half-erased garbage
            self._die("erase")
            return LFS_ERR_IO
        self.buffer[start:start + cfg.block_size] = b"\xff" * cfg.block_size
        return 0

    def sync(self, cfg: Any) -> int:
        return LFS_ERR_IO if self.dead else 0


def _oserror(err: LittleFSError, name: str = "") -> OSError:
    codes = {LittleFSError.Error.LFS_ERR_NOENT: errno.ENOENT, LittleFSError.Error.LFS_ERR_EXIST: errno.EEXIST,
             LittleFSError.Error.LFS_ERR_NOSPC: errno.ENOSPC, LittleFSError.Error.LFS_ERR_ISDIR: errno.EISDIR,
             LittleFSError.Error.LFS_ERR_NOTDIR: errno.ENOTDIR, LittleFSError.Error.LFS_ERR_NOTEMPTY: errno.ENOTEMPTY,
             LittleFSError.Error.LFS_ERR_INVAL: errno.EINVAL, LittleFSError.Error.LFS_ERR_CORRUPT: errno.EIO}
    return OSError(codes.get(err.code, errno.EIO), err.name, name)


class FlashFile:
    """A file on the simulated littlefs, with the methods MicroPython's VFS files have."""

    def __init__(self, fs: LittleFS, path: str, mode: str) -> None:
        self._fs = fs
        self.binary = "b" in mode
        if "r" in mode:
            flags = _O_RDWR if "+" in mode else _O_RDONLY
        elif "w" in mode:
            flags = (_O_RDWR if "+" in mode else _O_WRONLY) | _O_CREAT | _O_TRUNC
        elif "a" in mode:
            flags = (_O_RDWR if "+" in mode else _O_WRONLY) | _O_CREAT | _O_APPEND
        else:
            raise ValueError("bad mode " + mode)
        try:
            self._fh = lfs.file_open(fs.fs, path, flags)
        except LittleFSError as err:
            raise _oserror(err, path) from None
        self.closed = False

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self.closed:
            raise OSError(errno.EBADF, "file closed")
        try:
            return fn(self._fs.fs, self._fh, *args)
        except LittleFSError as err:
            raise _oserror(err) from None

    def read(self, n: int = -1) -> Any:
        if n is None or n < 0:
            n = self._call(lfs.file_size) - self._call(lfs.file_tell)
        data = self._call(lfs.file_read, max(n, 0))
        return data if self.binary else data.decode()

    def readinto(self, buf: Any) -> int:
        data = self._call(lfs.file_read, len(buf))
        buf[:len(data)] = data
        return len(data)

    def write(self, data: Any) -> int:
        raw = bytes(data) if self.binary else str(data).encode()
        return int(self._call(lfs.file_write, raw))

    def seek(self, off: int, whence: int = 0) -> int:
        return int(self._call(lfs.file_seek, off, whence))

    def tell(self) -> int:
        return int(self._call(lfs.file_tell))

    def flush(self) -> None:
        self._call(lfs.file_sync)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            lfs.file_close(self._fs.fs, self._fh)
        except LittleFSError as err:
            raise _oserror(err) from None

    def __enter__(self) -> "FlashFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class LittleFSFlash:
    """littlefs v2 on a FlashDevice; formats a blank device, mounts an existing one."""

    def __init__(self, device: FlashDevice | None = None, size: int = 2 * MIB, format_blank: bool = True) -> None:
        self.device = device if device is not None else FlashDevice(size)
        cfg = dict(block_size=self.device.block_size, block_count=self.device.block_count, read_size=32,
                   prog_size=32, cache_size=128, lookahead_size=32, block_cycles=100)
        self.lfs = LittleFS(self.device, mount=False, **cfg)
        try:
            self.lfs.mount()
        except LittleFSError:
            if not format_blank:
                raise
            self.lfs.format()
            self.lfs.mount()

    @staticmethod
    def _p(name: str) -> str:
        return "/" + name.lstrip("/")

    def open(self, name: str, mode: str = "r") -> FlashFile:
        return FlashFile(self.lfs, self._p(name), mode)

    def _do(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(self.lfs.fs, *args)
        except LittleFSError as err:
            raise _oserror(err, str(args[0]) if args else "") from None

    def rename(self, old: str, new: str) -> None:
        self._do(lfs.rename, self._p(old), self._p(new))

    def remove(self, name: str) -> None:
        self._do(lfs.remove, self._p(name))

    def mkdir(self, name: str) -> None:
        self._do(lfs.mkdir, self._p(name))

    def listdir(self, name: str = "") -> list[str]:
        try:
            return sorted(self.lfs.listdir(self._p(name)))
        except LittleFSError as err:
            raise _oserror(err, name) from None

    def stat(self, name: str) -> tuple[int, ...]:
        st = self._do(lfs.stat, self._p(name))
        mode = 0x4000 if st.type == 2 else 0x8000
        return (mode, 0, 0, 0, 0, 0, st.size, 0, 0, 0)

    def statvfs(self, name: str = "/") -> tuple[int, ...]:
        """As MicroPython's os.statvfs on littlefs: free = blocks not reachable from the tree."""
        used = self._do(lfs.fs_size)
        blocks = self.device.block_count
        free = blocks - used
        return (self.device.block_size, self.device.block_size, blocks, free, free, 0, 0, 0, 0, 255)

    def unmount(self) -> None:
        try:
            self.lfs.unmount()
        except LittleFSError:
            pass


def reboot(flash: LittleFSFlash) -> LittleFSFlash:
    """The flash after the power comes back: a fresh mount of the image as the cut left it."""
    return LittleFSFlash(FlashDevice(image=flash.device.image(), block_size=flash.device.block_size),
                         format_blank=False)
