"""A private mosquitto broker on 127.0.0.1 for the simulator and the tests.

Debian's mosquitto 2.x is what a checkpoint's Raspberry Pi runs, so that is what we run too.
"""
from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SEARCH = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerError(RuntimeError):
    pass


def find_mosquitto() -> str:
    found = shutil.which("mosquitto") or next((p for p in SEARCH if Path(p).exists()), None)
    if not found:
        raise BrokerError("mosquitto not found: install it with `apt-get install -y mosquitto`")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)  # polling a port that has no event to await
    raise BrokerError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


class Broker:
    """`with Broker(dir) as b:` starts mosquitto on a free port; `b.port`; `restart()` keeps the port."""

    def __init__(self, workdir: Path, port: int | None = None, persistence: bool = True,
                 extra_conf: list[str] | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.persistence = persistence
        self.extra_conf = extra_conf or []  # e.g. an acl_file line for authorisation tests
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

    def _write_conf(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            # Run as whoever started us: as root, mosquitto would switch to user `mosquitto`, who
            # cannot write our private log and persistence folder.
            f"user {getpass.getuser()}",
            "allow_anonymous true",
            # The gateway acks after its batch is durable: allow a whole batch in flight to it.
            "max_inflight_messages 200",
            # Queue for a gateway that restarts: a busy checkpoint makes ~1 event/s per lane.
            "max_queued_messages 100000",
            # A verdict must come back within ~300 ms: Nagle's algorithm alone costs ~40 ms a hop.
            "set_tcp_nodelay true",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_timestamp_format %H:%M:%S",
            "connection_messages true",
        ]
        lines += self.extra_conf
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "Broker":
        self._write_conf()
        self.proc = subprocess.Popen([find_mosquitto(), "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, 10, self.proc)
        except BrokerError as err:
            err_text = self.proc.stderr.read().decode() if self.proc.stderr else ""
            raise BrokerError(f"{err}: {err_text}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def freeze(self) -> None:
        """SIGSTOP: the broker stops answering (no PUBACK, no PINGRESP) but its sockets stay open."""
        if self.proc:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGCONT)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
