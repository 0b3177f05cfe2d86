"""Outbox, record codec and nvstate cases, written once and run both under CPython (pytest
parametrises over CASES) and under the real MicroPython 1.29 unix port (`run_all` in one
micropython process). So: no pytest, no typing, no f-strings, only `os`/`json`.

Each case takes a fresh folder path (the board's flash) and raises CaseFailed on a mismatch.
A folder can tear a write (littlefs cannot), so the torn-record cases run here.
"""

import json
import os

from kiosk import nvstate, outbox, protocol, record


class CaseFailed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise CaseFailed(what)


def eq(got, want, what=""):
    if got != want:
        raise CaseFailed("%s: got %r, want %r" % (what, got, want))


class FolderFS:
    """The calls the firmware makes on MicroPython's VFS, over a host folder."""

    def __init__(self, root):
        self.root = root
        try:
            os.mkdir(root)
        except OSError:
            pass

    def open(self, name, mode="r"):
        return open(self.root + "/" + name, mode)

    def rename(self, old, new):
        os.rename(self.root + "/" + old, self.root + "/" + new)

    def remove(self, name):
        os.remove(self.root + "/" + name)

    def listdir(self, name=""):
        return sorted(os.listdir(self.root + "/" + name))

    def mkdir(self, name):
        os.mkdir(self.root + "/" + name)

    def raw(self, name):
        with open(self.root + "/" + name, "rb") as f:
            return f.read()

    def put(self, name, data):
        with open(self.root + "/" + name, "wb") as f:
            f.write(data)


class FlatFS(FolderFS):
    """A board fs without mkdir (the outbox then keeps its files in the root)."""

    mkdir = None


def screening(seq, i=0, ref=True, config_hash="abcd1234", boot=1, epoch="e0e0e0e0e0e0e0e0"):
    code = protocol.code_info("health", ("green", "yellow", "red")[i % 3],
                              "%032x" % (i * 7919 + 1) if ref else None)
    return protocol.event(epoch, seq, boot, 1760000000000 + i * 5000, 1000 + i * 5000, "L1", "in",
                          "screening", config_hash,
                          {"result": "pass", "measured": "pass", "temp_c": 36.57, "skin_c": 34.12,
                           "ambient_c": 18.5, "distance_cm": 62, "code": code, "paired": True,
                           "in_range": True, "uncertainty_c": 0.21, "people": 1})


def fault(seq, detail, boot=1):
    return protocol.event("e0e0e0e0e0e0e0e0", seq, boot, None, 77, "L1", "in", "fault", "abcd1234",
                          {"part": "sensor", "detail": detail})


def drain(ob, limit=100000):
    """Peek/ack everything: the bodies in delivery order."""
    out = []
    while len(out) < limit:
        got = ob.peek(min(10, limit - len(out)))
        if not got:
            break
        for rid, body in got:
            out.append(body)
            ob.ack(rid)
    return out


def seqs(bodies):
    return [b["seq"] for b in bodies]


def segments(fs):
    return [n for n in fs.listdir("outbox") if n.endswith(".seg")]


# ---- record codec ---------------------------------------------------------------------------

def case_screening_record_is_compact(root):
    for ref in (True, False):
        body = screening(12345, 4, ref)
        data = record.encode_event(body)
        check(data[0] == record.COMPACT, "screening is compact")
        check(len(data) <= 64, "screening record <= 64 bytes: %d" % len(data))
        got = record.decode_event(data[0], data[3:-4], record.context(body))
        check(record.same(got, body), "round trip")
    eq(len(record.encode_event(screening(1, 1, True))), 57, "size with holder_ref")
    eq(len(record.encode_event(screening(1, 1, False))), 41, "size without holder_ref")


def case_every_type_round_trips(root):
    code = protocol.code_info("id", "none", None)
    bodies = [
        protocol.event("ep", 1, 2, None, 5, "L1", "out", "scan", "h", {"code": code, "reason": "no temperature"}),
        protocol.event("ep", 2, 2, 9, 5, "L1", "out", "manual", "h",
                       {"result": "fever", "temp_c": 38.1, "operator": "op7", "note": "clinical thermometer"}),
        protocol.event("ep", 3, 2, 9, 5, "L1", "out", "fault", "h",
                       {"part": "records_full", "detail": "outbox full", "lost": 12}),
        protocol.event("ep", 4, 2, 9, 5, "L1", "out", "boot", "h", {"fw": "0.1.0", "board": "esp32-devkitc-v4"}),
        protocol.event("ep", 5, 2, 9, 5, "L1", "out", "screening", "h",
                       {"result": "invalid", "temp_c": None, "skin_c": None, "ambient_c": None,
                        "distance_cm": None, "code": None}),
    ]
    for body in bodies:
        data = record.encode_event(body)
        check(data[0] != record.JSON, "compact: " + body["type"])
        got = record.decode_event(data[0], data[3:-4], record.context(body))
        check(record.same(got, body), "round trip " + body["type"])


def case_what_compact_cannot_hold_goes_json(root):
    roi = {"w": 2, "h": 2, "t": [36.1, 36.2, 36.3, 36.4]}
    odd = [
        protocol.event("ep", 1, 2, 9, 5, "L1", "in", "screening", "h",
                       {"result": "fever", "temp_c": 38.2, "skin_c": 36.0, "ambient_c": 20.0,
                        "distance_cm": 50, "code": None, "roi": roi}),
        protocol.event("ep", 2, 2, 9, 5, "L1", "in", "screening", "h",  # three decimals
                       {"result": "pass", "temp_c": 36.571, "skin_c": 34.0, "ambient_c": 20.0,
                        "distance_cm": 50, "code": None}),
        protocol.event("ep", 3, 2, 9, 5, "L1", "in", "screening", "h",  # an int where a float was
                       {"result": "pass", "temp_c": 37, "skin_c": 34.0, "ambient_c": 20.0,
                        "distance_cm": 50, "code": None}),
        protocol.event("ep", 4, 2, 9, 5, "L1", "in", "fault", "h", {"part": "flash", "detail": "x" * 300}),
        protocol.event("ep", 2 ** 33, 2, 9, 5, "L1", "in", "boot", "h", {"fw": "1", "board": "b", "extra": [1]}),
        protocol.event("ep", 6, 2, 9, 5, "L1", "in", "scan",  "h",
                       {"code": {"kind": "health", "color": "green", "holder_ref": "NOT-HEX-" * 4}}),
    ]
    for body in odd:
        data = record.encode_event(body)
        eq(data[0], record.JSON, "falls back to JSON")
        got = record.decode_event(data[0], data[3:-4], record.context(body))
        check(record.same(got, body), "JSON round trip")


# ---- queue ----------------------------------------------------------------------------------

def case_append_peek_ack_in_order(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs, seg_bytes=1000)
    for i in range(50):
        check(ob.append(screening(i, i)), "append")
    eq(ob.depth(), 50, "depth")
    first = ob.peek(3)
    eq(seqs([b for _, b in first]), [0, 1, 2], "peek order")
    check(ob.ack(first[1][0]), "ack out of order")
    check(not ob.ack(first[1][0]), "second ack of the same record")
    eq(seqs([b for _, b in ob.peek(3)]), [0, 2, 3], "acked record not peeked again")
    got = [first[1][1]] + drain(ob)
    eq(sorted(seqs(got)), list(range(50)), "everything once")
    eq(ob.depth(), 0, "empty")
    check(len(segments(fs)) == 1, "acknowledged segments deleted: %r" % segments(fs))


def case_telemetry_is_never_queued(root):
    ob = outbox.Outbox(FolderFS(root))
    try:
        ob.append(protocol.telemetry(5, None, outbox=0))
    except ValueError:
        return
    raise CaseFailed("telemetry was queued")


def case_recovery_rebuilds_the_queue(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs, seg_bytes=800, ack_every=8)
    originals = [screening(i, i) for i in range(60)]
    originals.insert(20, fault(1000, "detail " * 20))
    for body in originals:
        ob.append(body)
    delivered = drain(ob, 25)
    again = outbox.Outbox(fs, seg_bytes=800, ack_every=8)
    rest = drain(again)
    eq(again.corrupt, 0, "no corruption")
    check(len(rest) <= 60 + 1 - 25 + 8 + 10, "resends at most ack_every + a window")
    delivered_seqs = seqs(delivered)
    for body in originals:
        check(body["seq"] in delivered_seqs or body["seq"] in seqs(rest), "kept %d" % body["seq"])
    for body in rest:
        want = [o for o in originals if o["seq"] == body["seq"]][0]
        check(record.same(body, want), "same body after recovery")
    eq(again.last_seq, 59, "last seq")


def case_context_changes_are_kept(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs)
    bodies = [screening(1, 1), screening(2, 2, config_hash="99999999"), screening(3, 3, boot=2)]
    for body in bodies:
        ob.append(body)
    got = drain(outbox.Outbox(fs))
    eq(len(got), 3, "all three")
    for a, b in zip(got, bodies):
        check(record.same(a, b), "context of seq %d" % b["seq"])


def case_torn_tail_is_dropped_and_never_appended_after(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs)
    for i in range(5):
        ob.append(screening(i, i))
    name = "outbox/" + segments(fs)[-1]
    data = fs.raw(name)
    fs.put(name, data + record.encode_event(screening(5, 5))[:30])  # a write cut short
    again = outbox.Outbox(fs)
    eq(again.depth(), 5, "torn record not counted")
    check(again.corrupt >= 1, "torn tail counted")
    again.append(screening(6, 6))
    eq(len(segments(fs)), 2, "a new segment after a torn tail")
    eq(seqs(drain(outbox.Outbox(fs))), [0, 1, 2, 3, 4, 6], "others intact, in order")


def case_bad_crc_loses_one_record_only(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs)
    for i in range(10):
        ob.append(screening(i, i))
    name = "outbox/" + segments(fs)[-1]
    data = bytearray(fs.raw(name))
    size = len(record.encode_event(screening(0, 0)))
    first = len(data) - 10 * size  # after the CTX record
    data[first + 4 * size + 20] ^= 0x55  # inside seq 4
    fs.put(name, data)
    again = outbox.Outbox(fs)
    eq(seqs(drain(again)), [0, 1, 2, 3, 5, 6, 7, 8, 9], "only the damaged record lost")
    check(again.corrupt >= 1, "counted")


def case_corrupt_cursor_resends_rather_than_loses(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs, seg_bytes=600, ack_every=4)
    for i in range(30):
        ob.append(screening(i, i))
    drain(ob, 12)
    fs.put("outbox/cursor", b"\x00" * 16)
    again = outbox.Outbox(fs, seg_bytes=600, ack_every=4)
    got = seqs(drain(again))
    for s in range(12, 30):
        check(s in got, "kept %d" % s)
    eq(got, sorted(got), "in order")


def case_full_budget_refuses_and_counts(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs, seg_bytes=600, max_bytes=1800)
    kept = 0
    for i in range(200):
        if ob.append(screening(i, i)):
            kept += 1
    check(0 < kept < 200, "some kept: %d" % kept)
    eq(ob.refused, 200 - kept, "refused counted")
    eq(ob.depth(), kept, "depth")
    drain(ob)
    check(ob.append(screening(500, 1)), "room again once drained")
    eq(outbox.Outbox(fs, seg_bytes=600, max_bytes=1800).refused, 200 - kept, "refused survives a reboot")


def case_replay_puts_released_records_back(root):
    fs = FolderFS(root)
    ob = outbox.Outbox(fs)
    for i in range(10):
        ob.append(screening(i, i))
    drain(ob, 6)
    eq(ob.replay(3), 3, "replayed")
    eq(ob.depth(), 7, "depth")
    eq(seqs(drain(ob)), [3, 4, 5, 6, 7, 8, 9], "resent in order")


def case_without_mkdir_uses_prefixed_names(root):
    fs = FlatFS(root)
    ob = outbox.Outbox(fs)
    ob.append(screening(1, 1))
    check([n for n in fs.listdir() if n.startswith("outbox-")], "prefixed files in the root")
    eq(seqs(drain(outbox.Outbox(fs))), [1], "recovered")


def case_garbage_files_do_not_stop_recovery(root):
    fs = FolderFS(root)
    fs.mkdir("outbox")
    fs.put("outbox/00000003.seg", b"\xff" * 100)
    fs.put("outbox/cursor.tmp", b"junk")
    fs.put("outbox/notes.txt", b"hello")
    ob = outbox.Outbox(fs)
    eq(ob.depth(), 0, "nothing readable")
    check(ob.append(screening(1, 1)), "appends after garbage")
    eq(seqs(drain(outbox.Outbox(fs))), [1], "the new record")
    check("cursor.tmp" not in fs.listdir("outbox"), "stale temp removed")


# ---- nvstate --------------------------------------------------------------------------------

def case_seq_is_saved_per_block_not_per_event(root):
    fs = FolderFS(root)
    st = nvstate.NVState(fs, seq_block=16).load()
    st.count_boot()
    saves = st.saves
    taken = [st.take_seq() for _ in range(40)]
    eq(taken, list(range(40)), "consecutive")
    eq(st.saves - saves, 3, "one save per 16 seqs")
    # power cut: the next boot goes on above everything handed out
    again = nvstate.NVState(fs, seq_block=16).load()
    again.resume(35)
    check(again.next_seq >= 40, "never reused")
    eq(again.skipped, (36, again.next_seq - 1), "skipped range reported")
    eq(again.epoch, st.epoch, "same epoch")


def case_clean_release_leaves_no_gap(root):
    fs = FolderFS(root)
    st = nvstate.NVState(fs).load()
    for _ in range(5):
        st.take_seq()
    st.release()
    again = nvstate.NVState(fs).load()
    eq(again.resume(4), 5, "no gap")
    eq(again.skipped, None, "nothing skipped")


def case_foundation_state_is_upgraded(root):
    fs = FolderFS(root)
    fs.put("state.json", json.dumps({"epoch": "abc", "boot": 3, "next_seq": 41}).encode())
    st = nvstate.NVState(fs).load()
    eq((st.epoch, st.boot, st.take_seq()), ("abc", 3, 41), "read the old format")


CASES = [name for name in sorted(globals()) if name.startswith("case_")]


def run_all(root):
    """Run every case in a fresh subfolder of `root`; print one JSON line of failures."""
    failures = {}
    for i, name in enumerate(CASES):
        try:
            globals()[name](root + "/" + str(i))
        except Exception as err:  # noqa: BLE001 - report every case, not just the first
            failures[name] = "%s: %s" % (type(err).__name__, err)
    print(json.dumps({"ran": len(CASES), "failures": failures}))
