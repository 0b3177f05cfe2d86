"""How many screening events the kiosk outbox holds on a littlefs partition, measured, not estimated.

Fills a simulated littlefs v2 (MicroPython's ESP32 settings, 4 KiB blocks) through the firmware's
own Outbox until append() refuses, with typical screening events (verdict holder_ref, paired),
then reports events held, bytes per event, free space left and hours of a lane at 720 people/h.

    python -m tools.outbox_capacity            # 2 MiB (4 MB board default) and 8 MiB
    python -m tools.outbox_capacity --mib 2
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Any

from kiosk import nvstate, outbox, protocol
from sim.board.flash import MIB, FlashDevice, LittleFSFlash

LANE_PER_H = 720
GOAL_H = 24


def typical_event(st: nvstate.NVState, i: int, rng: random.Random) -> dict[str, Any]:
    code = protocol.code_info("health", "green", "%032x" % rng.getrandbits(128))
    return protocol.event(st.epoch, st.take_seq(), st.boot, 1_760_000_000_000 + i * 5000, i * 5000, "L1", "in",
                          "screening", "abcd1234",
                          {"result": "pass", "measured": "pass", "temp_c": round(36.2 + rng.random(), 2),
                           "skin_c": round(34 + rng.random(), 2), "ambient_c": 18.5, "distance_cm": 60,
                           "code": code, "paired": True, "in_range": True, "uncertainty_c": 0.21, "people": 1})


def measure(mib: int) -> dict[str, Any]:
    flash = LittleFSFlash(FlashDevice(mib * MIB))
    st = nvstate.NVState(flash).load()
    st.count_boot()
    ob = outbox.Outbox(flash)
    st.resume(ob.last_seq)
    rng = random.Random(mib)
    t0 = time.monotonic()
    held = 0
    while ob.append(typical_event(st, held, rng)):
        held += 1
    bsize, _, blocks, free = flash.statvfs()[:4]
    return {"mib": mib, "events": held, "bytes_per_event": ob.used_bytes() / held, "free_pct": 100 * free / blocks,
            "hours": held / LANE_PER_H, "estimate": ob.capacity(), "seconds": time.monotonic() - t0,
            "erases_per_event": flash.device.erases / held}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, action="append", help="filesystem size in MiB (repeatable)")
    args = ap.parse_args(argv)
    ok = True
    for mib in args.mib or [2, 8]:
        r = measure(mib)
        print(f"{r['mib']} MiB littlefs: {r['events']} screening events held "
              f"({r['bytes_per_event']:.1f} B/event on flash, {r['free_pct']:.1f}% of the partition left free), "
              f"= {r['hours']:.1f} h of a lane at {LANE_PER_H}/h; {r['erases_per_event']:.2f} block erases/event")
        if r["free_pct"] < 10:
            ok = False
            print("  FAIL: less than 10% of the partition left free", file=sys.stderr)
        if mib == 2 and r["hours"] < GOAL_H:
            ok = False
            print(f"  FAIL: below the {GOAL_H} h goal", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
