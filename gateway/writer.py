"""Turning received MQTT messages into committed rows: parse, validate, write, in batches.

`Processor` does the work for one batch: `protocol.parse_message` plus the gateway's range
checks, then one `write_batch` transaction (with the one-message-at-a-time fallback that
isolates a message the store cannot take). It runs either

- in a spawned worker process (`ProcessWriter`, the service's default): the paho process then
  only receives, forwards the raw bytes and acknowledges, so validation and SQLite run on the
  other core instead of competing with paho for one interpreter lock. Measured (tools/
  bench_ingest.py): validation alone halves what one CPython process can receive.
- or in a thread (`ThreadWriter`), for small setups and for debugging.

Both deliver results in submission order to `on_done(batch, outcome)`, after the commit, which
is when the caller acknowledges the batch's messages. A worker process that dies takes nothing
with it: its batches were never acknowledged, and the caller reconnects its session (the broker
then redelivers them) and starts a new worker.
"""
from __future__ import annotations

import logging
import multiprocessing.connection
import os
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from gateway.clock import LocalTime
from gateway.store import Accepted, BatchResult, Rejected, SQLiteStore
from kiosk import protocol

log = logging.getLogger("gateway.writer")

MAX_INT = 2**53  # beyond this a JSON number is not an exact integer anywhere (JS dashboards, doubles)
TEMP_RANGE = (-80.0, 150.0)  # degC: anything outside is not a reading, it is garbage


@dataclass(frozen=True)
class Limits:
    """The gateway's own range checks on top of the contract."""
    max_future_ms: int = 86_400_000
    min_ts_ms: int = 1_577_836_800_000  # 2020-01-01: earlier is a kiosk clock that never synced properly

    def check(self, channel: str, body: dict[str, Any], now: int) -> None:
        for name in ("seq", "boot", "uptime_ms", "distance_cm", "lost"):
            v = body.get(name)
            if isinstance(v, int) and v > MAX_INT:
                raise protocol.ProtocolError("out_of_range", f"{name} over 2^53")
        if channel == protocol.EVENT:
            ts = body.get("ts")
            if isinstance(ts, int):
                if ts > now + self.max_future_ms:
                    raise protocol.ProtocolError("ts_future", f"ts {ts} is {(ts - now) // 1000} s ahead")
                if ts < self.min_ts_ms:
                    raise protocol.ProtocolError("ts_past", f"ts {ts} before {self.min_ts_ms}")
            for name in ("temp_c", "skin_c", "ambient_c"):
                v = body.get(name)
                if isinstance(v, (int, float)) and not TEMP_RANGE[0] <= v <= TEMP_RANGE[1]:
                    raise protocol.ProtocolError("out_of_range", f"{name} {v!r}")


# What the receiving side hands over per message: (topic, payload, received_ms by the injectable clock).
Raw = tuple[str, bytes, int]


@dataclass
class Outcome:
    """One committed batch, as the receiving side sees it."""
    result: BatchResult
    rejects: dict[str, int] = field(default_factory=dict)
    write_s: float = 0.0
    store_errors: int = 0


@dataclass(frozen=True)
class StoreArgs:
    path: str
    timezone: str = "Asia/Shanghai"
    dead_letter_max: int = 1000
    dead_letter_payload_max: int = 2048
    late_after_ms: int = 300_000

    def open(self) -> SQLiteStore:
        return SQLiteStore(self.path, local=LocalTime(self.timezone), dead_letter_max=self.dead_letter_max,
                           dead_letter_payload_max=self.dead_letter_payload_max, late_after_ms=self.late_after_ms)


class Processor:
    def __init__(self, store: SQLiteStore, limits: Limits, dead_letter_payload_max: int = 2048) -> None:
        self.store = store
        self.limits = limits
        self.dead_letter_payload_max = dead_letter_payload_max
        self.stopping = False

    def parse(self, raw: Raw, rejects: dict[str, int]) -> Accepted | Rejected:
        topic, payload, now = raw
        try:
            checkpoint, kiosk, channel, body = protocol.parse_message(topic, payload)
            if channel in protocol.NEVER_STORED or kiosk == protocol.GATEWAY_ID:
                return Accepted(checkpoint, kiosk, channel, {}, now)  # counted, never kept
            self.limits.check(channel, body, now)
            text = payload.decode() if channel == protocol.EVENT else None
            return Accepted(checkpoint, kiosk, channel, body, now, text)
        except protocol.ProtocolError as err:
            return self._rejected(topic, payload, err.reason, err.detail, now, rejects)
        except Exception as err:  # noqa: BLE001 - a payload must never stop the gateway
            return self._rejected(topic, payload, "internal", type(err).__name__, now, rejects)

    def _rejected(self, topic: str, payload: bytes, reason: str, detail: str, now: int,
                  rejects: dict[str, int]) -> Rejected:
        rejects[reason] = rejects.get(reason, 0) + 1
        keep = topic.rsplit("/", 1)[-1] not in protocol.NEVER_STORED  # raw codes: never dead-lettered
        kept = payload[:self.dead_letter_payload_max] if keep else None
        return Rejected(reason, detail[:200] if keep else "", topic[:256], kept, now, len(payload))

    def process(self, batch: list[Raw]) -> Outcome:
        rejects: dict[str, int] = {}
        items = [self.parse(raw, rejects) for raw in batch]
        errors = 0
        while True:
            t0 = time.perf_counter()
            try:
                result, bad = self._write(items)
                errors += bad
                return Outcome(result, rejects, time.perf_counter() - t0, errors)
            except Exception:  # noqa: BLE001 - the disk: keep the messages unacked and retry
                errors += 1
                log.exception("store write failed; %d messages stay unacknowledged, retrying", len(items))
                if self.stopping:
                    raise
                time.sleep(1.0)

    def _write(self, items: list[Accepted | Rejected]) -> tuple[BatchResult, int]:
        try:
            return self.store.write_batch(items), 0
        except Exception:  # noqa: BLE001 - find the message that cannot be stored, keep the rest
            if len(items) == 1 and isinstance(items[0], Rejected):
                raise
        merged = BatchResult({})
        bad = 0
        for item in items:
            try:
                r = self.store.write_batch([item])
            except Exception as err:  # noqa: BLE001
                log.warning("message rejected by the store: %s", err)
                bad += 1
                r = self.store.write_batch([Rejected("store_error", type(err).__name__, "", None,
                                                     item.received_ms)])  # raises if the disk is broken
            for key, n in r.outcome.items():
                merged.outcome[key] = merged.outcome.get(key, 0) + n
            merged.alerts += r.alerts
        return merged, bad


Done = Callable[[list[Any], Outcome], None]


class ThreadWriter:
    """Processor in a thread of this process."""

    def __init__(self, store: SQLiteStore, limits: Limits, dead_letter_payload_max: int, batch_max: int,
                 on_done: Done) -> None:
        self.processor = Processor(store, limits, dead_letter_payload_max)
        self.batch_max = batch_max
        self.on_done = on_done
        self._pending: deque[tuple[Raw, Any]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._busy = 0
        self._thread = threading.Thread(target=self._loop, name="ingest-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, raw: Raw, tag: Any) -> None:
        with self._cond:
            self._pending.append((raw, tag))
            self._cond.notify()

    def depth(self) -> int:
        return len(self._pending) + self._busy

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.processor.stopping = True
        self._thread.join(10)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stop)
                if not self._pending:
                    return
                n = min(len(self._pending), self.batch_max)
                batch = [self._pending.popleft() for _ in range(n)]
                self._busy = n
            try:
                outcome = self.processor.process([raw for raw, _ in batch])
            except Exception:  # noqa: BLE001 - only when stopping with a broken disk
                return
            self._busy = 0
            self.on_done([tag for _, tag in batch], outcome)


def _worker_main(fd: int) -> int:
    """The writer process (started by ProcessWriter with a socket fd): batches in, outcomes out, in order,
    until the socket closes."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s[worker] %(levelname)s %(message)s")
    conn = multiprocessing.connection.Connection(fd)
    args, limits = conn.recv()
    store = args.open()
    processor = Processor(store, limits, args.dead_letter_payload_max)
    conn.send("ready")
    try:
        while True:
            try:
                batch: list[Raw] = conn.recv()
            except (EOFError, OSError):
                return 0  # the gateway is gone (even killed): nothing here was acknowledged
            conn.send(processor.process(batch))
    finally:
        store.close()


class WorkerDied(RuntimeError):
    pass


class ProcessWriter:
    """Processor in a spawned process; batches are pipelined (several in flight) and come back in order."""

    IN_FLIGHT = 4

    def __init__(self, args: StoreArgs, limits: Limits, batch_max: int, on_done: Done,
                 on_died: Callable[[], None]) -> None:
        self.args = args
        self.limits = limits
        self.batch_max = batch_max
        self.on_done = on_done
        self.on_died = on_died
        self._pending: deque[tuple[Raw, Any]] = deque()
        self._sent: deque[list[Any]] = deque()  # tags of batches the worker holds, oldest first
        self._sent_count = 0
        self._cond = threading.Condition()
        self._stop = False
        self._proc: Any = None
        self._conn: multiprocessing.connection.Connection | None = None
        self._generation = 0

    def start(self) -> None:
        self._spawn()

    def _spawn(self) -> None:
        # A plain child process on a socketpair rather than multiprocessing's spawn, which would
        # re-run the embedding program's __main__ module in the child.
        mine, theirs = socket.socketpair()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        # Imported by name (not run as __main__), so what it pickles is gateway.writer.Outcome.
        code = "import sys; from gateway.writer import _worker_main; sys.exit(_worker_main(int(sys.argv[1])))"
        proc = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())],
                                pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        parent = multiprocessing.connection.Connection(mine.detach())
        parent.send((self.args, self.limits))
        if not parent.poll(60) or parent.recv() != "ready":
            proc.kill()
            raise WorkerDied("the writer process did not start")
        with self._cond:
            self._proc, self._conn = proc, parent
            self._generation += 1
            gen = self._generation
        threading.Thread(target=self._send_loop, args=(gen,), name="ingest-send", daemon=True).start()
        threading.Thread(target=self._recv_loop, args=(gen,), name="ingest-recv", daemon=True).start()

    def submit(self, raw: Raw, tag: Any) -> None:
        with self._cond:
            self._pending.append((raw, tag))
            self._cond.notify_all()

    def depth(self) -> int:
        return len(self._pending) + self._sent_count

    def _send_loop(self, gen: int) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stop or gen != self._generation
                                    or (self._pending and len(self._sent) < self.IN_FLIGHT))
                if self._stop or gen != self._generation:
                    return
                n = min(len(self._pending), self.batch_max)
                batch = [self._pending.popleft() for _ in range(n)]
                self._sent.append([tag for _, tag in batch])
                self._sent_count += n
                conn = self._conn
            try:
                assert conn is not None
                conn.send([raw for raw, _ in batch])
            except (OSError, ValueError):
                return  # the receiver notices the dead worker

    def _recv_loop(self, gen: int) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            try:
                outcome: Outcome = conn.recv()
            except Exception as err:  # noqa: BLE001 - EOF, a reset, or an unreadable answer: restart it
                if not isinstance(err, (EOFError, OSError)):
                    log.exception("unreadable answer from the writer process")
                self._died(gen)
                return
            with self._cond:
                tags = self._sent.popleft()
                self._sent_count -= len(tags)
                self._cond.notify_all()
            self.on_done(tags, outcome)

    def _died(self, gen: int) -> None:
        with self._cond:
            if self._stop or gen != self._generation:
                return
            lost = sum(len(t) for t in self._sent) + len(self._pending)
            self._sent.clear()
            self._pending.clear()  # their packet ids belong to the connection the caller now drops
            self._sent_count = 0
            self._generation += 1  # retires this generation's sender
            self._cond.notify_all()
        log.error("writer process died with %d messages unacknowledged; restarting it", lost)
        self.on_died()  # the caller drops its session's unacked state (reconnect: the broker redelivers)
        try:
            self._spawn()
        except Exception:  # noqa: BLE001
            log.exception("could not restart the writer process")

    def stop(self) -> None:
        deadline = time.monotonic() + 10
        with self._cond:  # let what was received be written (and acknowledged) first
            self._cond.wait_for(lambda: not self._pending and not self._sent, max(0.0, deadline - time.monotonic()))
            self._stop = True
            self._cond.notify_all()
            conn, proc = self._conn, self._proc
        if conn is not None:
            # shutdown, not just close: our receiver thread is blocked reading this socket, which
            # keeps it open past close(); shutdown wakes it and gives the worker its EOF.
            with socket.socket(fileno=os.dup(conn.fileno())) as sock:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            conn.close()
        if proc is not None:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

