"""Power cuts on the real filesystem: littlefs v2 on a block device that dies at the N-th program
or erase, swept over a busy run (events appended, acks interleaved and out of order, segments
rolling and being deleted, seq blocks reserved, a config change). After each cut the flash is
remounted and a new NVState + Outbox recover from it, and we show:

- recovery never raises, and the filesystem mounts;
- every event whose append returned True before the cut was delivered (acked) or is still queued,
  with exactly the body it had; nothing else is queued, nothing twice, in seq order;
- no seq handed out before the cut is handed out again after it (same epoch).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest

from kiosk import nvstate, outbox, protocol, record
from sim.board.flash import FlashDevice, LittleFSFlash, reboot

FLASH_BYTES = 256 * 1024
SEG_BYTES = 1500
ACK_EVERY = 8
EVENTS = 240


def _body(st: nvstate.NVState, i: int, rng: random.Random, config_hash: str) -> dict[str, Any]:
    seq = st.take_seq()
    kind = rng.random()
    if kind < 0.08:
        return protocol.event(st.epoch, seq, st.boot, None, i * 10, "L1", "in", "fault", config_hash,
                              {"part": "sensor", "detail": "I2C NACK at 0x33 " * rng.randrange(1, 30)})
    if kind < 0.15:
        return protocol.event(st.epoch, seq, st.boot, 1_760_000_000_000 + i, i * 10, "L1", "in", "scan", config_hash,
                              {"code": protocol.code_info("id", "none", None)})
    code = protocol.code_info("health", "green", "%032x" % rng.getrandbits(128)) if rng.random() < 0.8 else None
    return protocol.event(st.epoch, seq, st.boot, 1_760_000_000_000 + i, i * 10, "L1", "in", "screening", config_hash,
                          {"result": "pass", "measured": "pass", "temp_c": round(36 + rng.random(), 2),
                           "skin_c": round(34 + rng.random(), 2), "ambient_c": 18.5, "distance_cm": 60,
                           "code": code, "paired": code is not None, "in_range": True, "uncertainty_c": 0.2,
                           "people": 1})


@dataclass
class Run:
    epoch: str | None = None
    taken: list[int] = field(default_factory=list)  # every seq handed out before the cut
    durable: dict[int, dict[str, Any]] = field(default_factory=dict)  # append returned True
    attempted: dict[int, dict[str, Any]] = field(default_factory=dict)  # append started
    delivered: set[int] = field(default_factory=set)  # acked: the broker has them
    completed: bool = False


def busy_run(flash: LittleFSFlash, seed: int = 1) -> Run:
    """A kiosk's first boot and EVENTS events, stopping the moment the flash dies."""
    dev = flash.device
    run = Run()
    rng = random.Random(seed)
    st = nvstate.NVState(flash).load()
    run.epoch = st.epoch
    try:
        st.count_boot()
    except OSError:
        return run
    ob = outbox.Outbox(flash, seg_bytes=SEG_BYTES, ack_every=ACK_EVERY)
    if dev.dead:
        return run
    st.resume(ob.last_seq)
    config_hash = "aaaa0001"
    for i in range(EVENTS):
        if i == EVENTS // 2:
            config_hash = "bbbb0002"  # a config update mid-run: a new CTX record
        try:
            body = _body(st, i, rng, config_hash)
        except OSError:  # the seq block could not be saved: the kiosk is dead
            return run
        run.taken.append(body["seq"])
        run.attempted[body["seq"]] = body
        if ob.append(body):
            run.durable[body["seq"]] = body
        if dev.dead:
            return run
        # the link: up to 10 in flight, PUBACKs mostly in order, sometimes not, sometimes late
        inflight = ob.peek(10)
        if rng.random() < 0.6:
            rng.shuffle(inflight) if rng.random() < 0.3 else None
            for rid, b in inflight[:rng.randrange(0, len(inflight) + 1)]:
                ob.ack(rid)
                run.delivered.add(b["seq"])
                if dev.dead:
                    return run
    run.completed = True
    return run


def total_ops() -> tuple[int, int]:
    flash = LittleFSFlash(FlashDevice(FLASH_BYTES))  # formatting is not part of the run
    progs, erases = flash.device.progs, flash.device.erases
    run = busy_run(flash)
    assert run.completed and len(run.durable) == EVENTS
    return flash.device.progs - progs, flash.device.erases - erases


def check_after_reboot(flash: LittleFSFlash, run: Run) -> dict[str, int]:
    again = reboot(flash)  # mount must work: littlefs survives any single cut
    st = nvstate.NVState(again).load()
    ob = outbox.Outbox(again, seg_bytes=SEG_BYTES, ack_every=ACK_EVERY)  # never raises
    st.resume(ob.last_seq)
    assert ob.errors == 0, ob.last_error
    queued = []
    while True:
        got = ob.peek(10)
        if not got:
            break
        for rid, body in got:
            queued.append(body)
            assert ob.ack(rid)
    seqs = [b["seq"] for b in queued]
    assert len(seqs) == len(set(seqs)), "nothing queued twice"
    assert seqs == sorted(seqs), "queued in order"
    for body in queued:
        # only events that were (being) appended, each with the body it had
        assert body["seq"] in run.attempted, body
        assert record.same(body, run.attempted[body["seq"]]), body
    lost = [s for s in run.durable if s not in run.delivered and s not in seqs]
    assert not lost, f"durable events neither delivered nor queued: {lost}"
    if run.taken:
        assert st.epoch == run.epoch, "the epoch survives"
        new = [st.take_seq() for _ in range(3)]
        assert min(new) > max(run.taken), "no seq reused"
    elif st.epoch == run.epoch:
        assert st.take_seq() == 0
    # and the queue goes on working on the recovered flash
    assert ob.append(protocol.event(st.epoch, st.take_seq(), st.boot, None, 1, "L1", "in", "boot", "h",
                                    {"fw": "x", "board": "y"}))
    return {"queued": len(seqs), "resent": sum(1 for s in seqs if s in run.delivered)}


def _points(total: int, n: int) -> list[int]:
    return sorted({max(1, round(1 + k * (total - 1) / (n - 1))) for k in range(n)})


PROG_POINTS = 260
ERASE_POINTS = 120


@pytest.fixture(scope="module")
def ops() -> tuple[int, int]:
    return total_ops()


@pytest.mark.parametrize("kind,points", [("prog", PROG_POINTS), ("erase", ERASE_POINTS)])
def test_power_cut_sweep(kind: str, points: int, ops: tuple[int, int]) -> None:
    total = ops[0] if kind == "prog" else ops[1]
    cuts = _points(total, points)
    assert len(cuts) >= min(points, total) * 0.9
    stats = {"cuts": 0, "queued": 0, "resent": 0, "mid_append": 0}
    for n in cuts:
        flash = LittleFSFlash(FlashDevice(FLASH_BYTES, seed=n))
        flash.device.cut_at(n, kind)
        run = busy_run(flash, seed=1)
        assert flash.device.dead, f"cut {kind} #{n} never came"
        got = check_after_reboot(flash, run)
        stats["cuts"] += 1
        stats["queued"] += got["queued"]
        stats["resent"] += got["resent"]
        stats["mid_append"] += len(run.attempted) - len(run.durable)
    print(f"\n{kind}: {total} ops in the run, {stats}")
    assert stats["cuts"] == len(cuts)


def test_a_cut_at_every_op_of_one_append() -> None:
    """Dense: every program/erase of a few appends around a segment roll, one by one."""
    probe = LittleFSFlash(FlashDevice(FLASH_BYTES))
    marks = []
    run_ops = probe.device.ops

    class Marking(outbox.Outbox):
        def append(self, body: dict[str, Any]) -> bool:
            marks.append(run_ops())
            return super().append(body)

    original = outbox.Outbox
    outbox.Outbox = Marking  # type: ignore[misc]
    try:
        busy_run(probe)
    finally:
        outbox.Outbox = original  # type: ignore[misc]
    start, stop = marks[22], marks[30]  # spans the first roll (~25 records a segment)
    for n in range(start + 1, stop + 1):
        flash = LittleFSFlash(FlashDevice(FLASH_BYTES, seed=n))
        flash.device.cut_at(n)
        run = busy_run(flash)
        assert flash.device.dead
        check_after_reboot(flash, run)
