"""Pure-logic cases for scanner framing, config validation and commands, written once and run
both under CPython (pytest parametrises over CASES) and under the real MicroPython 1.29 unix port
(`run_all` in one micropython process). So: no pytest, no typing, no f-strings, only `os`/`json`.

Each case takes a fresh folder path (the board's flash) and raises CaseFailed on a mismatch.
"""

import json
import os

from kiosk import commands, config, protocol, scanner


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

    def write(self, name, data):
        if isinstance(data, str):
            data = data.encode()
        with open(self.root + "/" + name, "wb") as f:
            f.write(data)

    def read(self, name):
        with open(self.root + "/" + name, "rb") as f:
            return f.read()


class FullFS(FolderFS):
    """A flash that refuses every write (full, or worn out)."""

    def open(self, name, mode="r"):
        if "w" in mode:
            raise OSError(28, "no space left")
        return FolderFS.open(self, name, mode)


def _lcg(seed):
    # The same pseudo-random bytes on both interpreters.
    state = [seed & 0xFFFFFFFF]

    def nxt():
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 16) & 0xFF
    return nxt


VALID_ID = "11010519491231002X"  # the GB 11643 standard's own example
VALID_ID2 = "110101199001011237"


# ---- scanner -------------------------------------------------------------------------------

def case_scanner_terminators(root):
    s = scanner.Scanner()
    eq(s.feed(b"A1\rB2\nC3\r\nD4\n\rE5\r\r\n\n"), ["A1", "B2", "C3", "D4", "E5"], "CR/LF/CRLF/LFCR")
    eq(s.dropped, 0, "empty lines are not rejections")


def case_scanner_split_reads(root):
    data = b"hello-1\r\nworld-2\r\n\xe4\xb8\xad\xe6\x96\x87\r\n"
    for size in (1, 2, 3, 5, 7):
        s = scanner.Scanner()
        got = []
        for i in range(0, len(data), size):
            got += s.feed(data[i:i + size], i)
        eq(got, ["hello-1", "world-2", "\u4e2d\u6587"], "split every %d bytes" % size)
    s = scanner.Scanner()
    eq(s.feed(b"abc\r"), ["abc"], "CR ends the line at once")
    eq(s.feed(b"\ndef\r\n"), ["def"], "the LF after it is not a second line")


def case_scanner_overlong(root):
    s = scanner.Scanner(max_line=2048)
    big = b"A" * 65536
    got = []
    for i in range(0, len(big), 4096):
        got += s.feed(big[i:i + 4096])
    eq(got, [], "nothing from a 64 KiB line")
    eq(len(s._buf), 2048, "buffer never grows")
    got += s.feed(b"\r\nOK-1\r\n")
    eq(got, ["OK-1"], "resync after the overlong line")
    eq(s.counts["overlong"], 1, "counted once")
    s2 = scanner.Scanner(max_line=8)
    eq(s2.feed(b"12345678\r\n123456789\r\nabc\n"), ["12345678", "abc"], "cap is inclusive")


def case_scanner_control_bytes(root):
    s = scanner.Scanner()
    eq(s.feed(b"\x00\x00\r\nAB\x00CD\r\nok\x1b[0m\r\nDEL\x7f\nTAB\there\r\ngood\r\n"), ["good"], "control lines rejected")
    eq(s.counts["control"], 5, "each bad line counted once")


def case_scanner_invalid_utf8(root):
    s = scanner.Scanner()
    bad = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"ab\xe4\xb8", b"\x80"]
    for b in bad:
        eq(s.feed(b + b"\r\n"), [], "rejected %r" % b)
    eq(s.counts["not_utf8"], len(bad), "counted")
    eq(s.feed("\u00e9\u4e2d\U0001f600\r\n".encode()), ["\u00e9\u4e2d\U0001f600"], "valid multibyte")


def case_scanner_repeat_window(root):
    s = scanner.Scanner(repeat_ms=3000)
    eq(s.feed(b"CODE\r\n", 1000), ["CODE"], "first")
    eq(s.feed(b"CODE\r\n", 1500), [], "repeat")
    eq(s.feed(b"CODE\r\n", 4000), [], "window slides with each sighting")
    eq(s.feed(b"CODE\r\n", 7001), ["CODE"], "after the window")
    eq(s.feed(b"OTHER\r\nCODE\r\n", 7100), ["OTHER", "CODE"], "another code in between")
    eq(s.counts["repeat"], 2, "repeats counted")
    eq(scanner.Scanner().feed(b"X\r\nX\r\n"), ["X", "X"], "no time given: nothing suppressed")
    period = 1 << 30
    w = scanner.Scanner(repeat_ms=3000, ticks_diff=lambda a, b: ((a - b + period // 2) % period) - period // 2)
    eq(w.feed(b"W\r\n", period - 100), ["W"], "before the wrap")
    eq(w.feed(b"W\r\n", 500), [], "ticks wrapped, still inside the window")


def case_scanner_partial_frame(root):
    s = scanner.Scanner(idle_ms=500)
    eq(s.feed(b"SP1.half-a-co", 0), [], "partial")
    eq(s.feed(b"de\r\n", 200), ["SP1.half-a-code"], "continued in time")
    eq(s.feed(b"broken-fra", 1000), [], "open")
    eq(s.feed(b"NEXT\r\n", 2000), ["NEXT"], "stale partial dropped, not glued on")
    eq(s.counts["partial"], 1, "counted")


def case_scanner_random_garbage(root):
    rnd = _lcg(7)
    s = scanner.Scanner(max_line=256)
    for _ in range(50):
        chunk = bytes(rnd() for _ in range(97))
        for code in s.feed(chunk):
            check(len(code.encode()) <= 256, "cap")
            for c in code:
                check(ord(c) >= 0x20 and ord(c) != 0x7F, "no control characters")
    eq(s.feed(b"\r\nAFTER\r\n"), ["AFTER"], "resync after garbage")


def case_code_kinds(root):
    eq(scanner.code_kind(VALID_ID), "id", "standard example")
    eq(scanner.code_kind(VALID_ID2), "id", "valid")
    eq(scanner.code_kind(VALID_ID.lower()), "id", "lower-case x")
    eq(scanner.code_kind("110101199001011234"), "unknown", "wrong check digit")
    eq(scanner.code_kind("110101199013011237"), "unknown", "month 13")
    eq(scanner.code_kind("11010119900101123"), "unknown", "17 chars")
    eq(scanner.code_kind("https://example.org/x"), "unknown", "url")
    eq(scanner.code_kind("SP1.garbage"), "unknown", "broken signed pass")
    body = protocol.pass_body("holder-1", "vehicle", "green", 1000, 2000, "k1")
    eq(scanner.code_kind(protocol.encode_pass(body, bytes(64))), "vehicle", "vehicle pass")
    body = protocol.pass_body("holder-1", "health", "yellow", 1000, 2000, "k1")
    eq(scanner.code_kind(protocol.encode_pass(body, bytes(64))), "health", "health pass")
    # every single-digit change of a valid number is caught by the check digit
    for i in range(17):
        for d in "0123456789":
            if d != VALID_ID2[i]:
                t = VALID_ID2[:i] + d + VALID_ID2[i + 1:]
                check(not scanner.id_check_ok(t), "single-digit error at %d not caught" % i)


# ---- config --------------------------------------------------------------------------------

def _store(root, text=None, good=None):
    fs = FolderFS(root)
    if text is not None:
        fs.write("config.json", text)
    if good is not None:
        fs.write("config.good.json", good)
    return fs, config.Store(fs)


GOOD = {"checkpoint": "cp-7", "kiosk": "k2", "lane": "L3", "dir": "out", "broker_host": "10.0.0.2",
        "broker_port": 1884, "fever_c": 37.5}


def case_config_valid_keeps_last_good(root):
    fs, st = _store(root, json.dumps(GOOD))
    cfg, problem = st.load()
    eq(problem, None, "problem")
    eq((cfg["kiosk"], cfg["fever_c"], cfg["recheck_band_c"]), ("k2", 37.5, 0.2), "merged over defaults")
    eq(json.loads(fs.read("config.good.json")), GOOD, "last good written")
    check("config.good.json.tmp" not in fs.listdir(), "no temp file left")
    eq(st.hash, config.config_hash(cfg), "hash")
    check(st.hash != config.config_hash(config.DEFAULTS), "fever_c changes the hash")


def case_config_wrong_types(root):
    cases = [
        ({"broker_port": "1883"}, "broker_port: must be an integer, got text '1883'"),
        ({"fever_c": "37.3"}, "fever_c: must be a number, got text '37.3'"),
        ({"fever_c": True}, "fever_c: must be a number, got true"),
        ({"stable_frames": 4.0}, "stable_frames: must be an integer, got 4.0"),
        ({"kiosk": 7}, "kiosk: must be a string, got 7"),
        ({"dir": "sideways"}, "dir: must be in or out, got text 'sideways'"),
        ({"lane": "L 1"}, "lane: has a character outside [A-Za-z0-9_-]"),
        ({"broker_host": "evil host"}, "broker_host: must be a host name or IP address"),
        ({"scanner_baud": 1234}, "scanner_baud: must be one of 0, 9600, 19200, 38400, 57600, 115200 (0: the board's), got 1234"),
        ({"keepalive_s": None}, "keepalive_s: must be an integer, got null"),
    ]
    for data, want in cases:
        cfg, errors = config.validate(data)
        eq(cfg, None, "rejected " + want)
        eq(errors, [want], "message")


def case_config_unknown_keys(root):
    cfg, errors = config.validate({"fever": 37.3, "kiosk": "k1", "colour": "red"})
    eq(cfg, None, "rejected")
    eq(errors, ["colour: unknown setting", "fever: unknown setting"], "each unknown key named")


def case_config_bounds_from_screening(root):
    from kiosk import screening
    for key in screening.BOUNDS:
        lo, hi = screening.BOUNDS[key]
        eq(config.validate({key: lo})[1], [], key + " lo ok")
        eq(config.validate({key: hi})[1], [], key + " hi ok")
        step = 1 if isinstance(screening.DEFAULTS[key], int) else 0.01
        for bad in (lo - step, hi + step):
            cfg, errors = config.validate({key: bad})
            eq(cfg, None, key + " out of bounds")
            check(errors[0].startswith(key + ": ") and ("is outside " + str(lo) + ".." + str(hi)) in errors[0],
                  "message " + errors[0])
    eq(config.validate({"fever_c": 39.5})[1], ["fever_c: 39.5 is outside 37.0..38.5"], "fever_c")
    eq(config.validate({"fever_c": float("nan")})[0], None, "NaN")
    eq(config.validate({"fever_c": float("inf")})[0], None, "inf")


def case_config_cross_field(root):
    cfg, errors = config.validate({"min_core_c": 36.0, "fever_c": 37.0, "recheck_band_c": 1.0})
    eq(errors, ["recheck_band_c: fever_c - recheck_band_c must stay above min_core_c"], "cross rule")


def case_config_missing_file(root):
    fs, st = _store(root)
    cfg, problem = st.load()
    eq(cfg, config.DEFAULTS, "defaults")
    eq(problem, "config.json: missing; no valid last good config, using safe defaults", "problem")
    eq(st.source, "defaults", "source")
    eq(config.load(FolderFS(root)), config.DEFAULTS, "compat load() returns a dict, never raises")


def case_config_truncated_falls_back(root):
    text = json.dumps(GOOD)
    fs, st = _store(root, text)
    st.load()  # makes config.good.json
    fs.write("config.json", text[:len(text) // 2].encode())
    cfg, problem = config.Store(fs).load()
    eq(cfg["kiosk"], "k2", "last good used")
    eq(problem, "config.json: not valid JSON (truncated or corrupt); using the last good config", "problem")
    eq(json.loads(fs.read("config.good.json")), GOOD, "last good kept")
    fs.write("config.good.json", b'{"kiosk": "k2", "fever_c": 99}')
    st = config.Store(fs)
    cfg, problem = st.load()
    eq(cfg, config.DEFAULTS, "then defaults")
    eq(st.source, "defaults", "source")
    eq(problem, "config.json: not valid JSON (truncated or corrupt); no valid last good config, using safe defaults",
       "problem")


def case_config_bad_values_fall_back(root):
    fs, st = _store(root, json.dumps({"kiosk": "k2", "fever_c": 36.0, "volume": 3}),
                    json.dumps(GOOD))
    cfg, problem = st.load()
    eq(cfg["broker_port"], 1884, "last good")
    eq(problem, "config.json: fever_c: 36.0 is outside 37.0..38.5; volume: unknown setting; using the last good config",
       "problem")
    for junk in (b"", b"   ", b"[1,2]", b"\xff\xfe{", b"null", b"{" * 9000):
        fs.write("config.json", junk)
        cfg, problem = config.Store(fs).load()
        eq(cfg["kiosk"], "k2", "fallback for %r" % junk[:8])
        check(problem.startswith("config.json: ") and problem.endswith("; using the last good config"), problem)


def case_config_remote_apply(root):
    fs, st = _store(root, json.dumps(GOOD))
    st.load()
    before = st.hash
    cfg, errors = st.apply_remote({"fever_c": 37.6, "recheck_band_c": 0.3})
    eq(errors, [], "applied")
    eq((cfg["fever_c"], cfg["recheck_band_c"], cfg["kiosk"]), (37.6, 0.3, "k2"), "merged over local")
    check(st.hash != before, "hash follows")
    eq(st.hash, config.expected_hash({"fever_c": 37.6, "recheck_band_c": 0.3}, st.local), "gateway can predict it")
    # survives a reboot, from flash
    st2 = config.Store(fs)
    cfg2, problem = st2.load()
    eq((cfg2["fever_c"], problem, st2.hash), (37.6, None, st.hash), "persisted")
    # the whole remote layer is replaced: keys left out go back to local
    cfg, errors = st2.apply_remote({"pair_window_ms": 4000})
    eq((cfg["fever_c"], cfg["pair_window_ms"]), (37.5, 4000), "replaced, not merged")
    cfg, errors = st2.apply_remote({})
    eq(cfg, st2.local, "{} clears the remote layer")


def case_config_remote_reject(root):
    fs, st = _store(root, json.dumps(GOOD))
    st.load()
    cfg0, h0 = st.cfg, st.hash
    cfg, errors = st.apply_remote({"fever_c": 36.5, "recheck_band_c": 0.3, "checkpoint": "cp-x",
                                   "broker_host": "1.2.3.4", "wifi_ssid": "x", "bogus": 1})
    eq(errors, ["bogus: unknown setting", "broker_host: local-only, may not be set remotely",
                "checkpoint: local-only, may not be set remotely", "fever_c: 36.5 is outside 37.0..38.5",
                "wifi_ssid: local-only, may not be set remotely"], "every reason")
    eq((cfg, st.cfg, st.hash), (cfg0, cfg0, h0), "nothing applied (not even recheck_band_c)")
    check("config.remote.json" not in fs.listdir(), "nothing persisted")
    eq(st.apply_remote([1])[1], ["config must be a JSON object"], "not an object")


def case_config_remote_corrupt_ignored(root):
    fs, st = _store(root, json.dumps(GOOD))
    fs.write("config.remote.json", b'{"fever_c": 37.')
    cfg, problem = st.load()
    eq(cfg["fever_c"], 37.5, "local only")
    eq(problem, "config.remote.json: not valid JSON (truncated or corrupt); ignored", "problem")
    fs.write("config.remote.json", b'{"kiosk": "k9"}')
    cfg, problem = config.Store(fs).load()
    eq((cfg["kiosk"], problem), ("k2", "config.remote.json: kiosk: local-only, may not be set remotely; ignored"),
       "identity never from the remote file")


def case_config_remote_flash_full(root):
    fs, st = _store(root, json.dumps(GOOD))
    st.load()
    st._fs = FullFS(root)
    cfg, errors = st.apply_remote({"fever_c": 37.6})
    eq(cfg["fever_c"], 37.5, "unchanged when it cannot be persisted")
    check(errors and errors[0].startswith("flash: "), "flash error")


# ---- commands ------------------------------------------------------------------------------

NOW = 1760000000000


def _cmd(cid, name, args=None, expires=NOW + 60000):
    return json.dumps({"id": cid, "name": name, "args": args or {}, "expires": expires}).encode()


def case_commands_reboot_ack_first(root):
    fs = FolderFS(root)
    c = commands.Commands(fs)
    ack, action = c.handle(_cmd("c1", "reboot"), NOW)
    eq(ack, {"id": "c1", "ok": True, "detail": "rebooting"}, "ack")
    eq((action.name, action.id, action.ack_first), ("reboot", "c1", True), "action after the ack")
    check("c1" in fs.read("cmds.json").decode(), "journalled before the action is handed out")
    # the board reboots; the broker redelivers the command: acked again, not acted on
    c2 = commands.Commands(fs)
    ack2, action2 = c2.handle(_cmd("c1", "reboot"), NOW + 5000)
    eq((ack2, action2), (ack, None), "redelivery after reboot")
    eq(c2.handle(_cmd("c1", "reboot", expires=NOW - 1), NOW + 5000), (ack, None), "same result even when expired since")


def case_commands_expired(root):
    c = commands.Commands(FolderFS(root))
    eq(c.handle(_cmd("c2", "reboot", expires=NOW - 1), NOW), ({"id": "c2", "ok": False, "detail": "expired"}, None),
       "expired")
    ack, action = c.handle(_cmd("c3", "reboot", expires=NOW - 1), None)
    check(action is not None, "no synced clock: cannot tell, accepted (the broker's message expiry guards)")
    ack, action = c.handle(_cmd("c2", "reboot"), NOW)
    eq(action.name, "reboot", "a refused id is not journalled")


def case_commands_result_after_action(root):
    fs = FolderFS(root)
    c = commands.Commands(fs)
    ack, action = c.handle(_cmd("s1", "selftest"), NOW)
    eq((ack, action.name, action.ack_first), (None, "selftest", False), "perform, then ack")
    eq(c.handle(_cmd("s1", "selftest"), NOW), (None, None), "redelivered while running: ignored")
    done = c.finish(action, True, "sensor ok, air ok, scanner ok, flash ok, link ok")
    eq(done, {"id": "s1", "ok": True, "detail": "sensor ok, air ok, scanner ok, flash ok, link ok"}, "ack")
    eq(commands.Commands(fs).handle(_cmd("s1", "selftest"), NOW), (done, None), "after reboot")
    ack, action = c.handle(_cmd("k1", "calibrate", {"reference_c": 35.0}), NOW)
    eq((ack, action.args), (None, {"reference_c": 35.0}), "calibrate args")
    # reset before finish(): on redelivery, say so instead of running it again
    eq(commands.Commands(fs).handle(_cmd("k1", "calibrate", {"reference_c": 35.0}), NOW),
       ({"id": "k1", "ok": False, "detail": "interrupted by a reboot"}, None), "interrupted")


def case_commands_refused(root):
    c = commands.Commands(FolderFS(root))
    cases = [
        (_cmd("u1", "update", {"url": "x"}), "not supported yet"),
        (_cmd("u2", "selfdestruct"), "unknown command selfdestruct"),
        (_cmd("u3", "calibrate"), "missing arg reference_c"),
        (_cmd("u4", "calibrate", {"reference_c": "35"}), "arg reference_c must be a number"),
        (_cmd("u5", "calibrate", {"reference_c": 80}), "arg reference_c outside 30.0..45.0"),
        (_cmd("u6", "reboot", {"now": 1}), "unknown arg now for reboot"),
        (json.dumps({"id": "u7", "name": "reboot", "args": {}}).encode(), "expires must be UTC Unix milliseconds"),
        (json.dumps({"id": "u8", "args": {}, "expires": NOW}).encode(), "missing or bad name"),
        (json.dumps({"id": "u9", "name": "snapshot", "args": [], "expires": NOW + 1}).encode(), "args must be an object"),
    ]
    for payload, want in cases:
        ack, action = c.handle(payload, NOW)
        eq((ack["ok"], ack["detail"], action), (False, want, None), want)
    for junk in (b"", b"\xff", b"[]", b"{\"name\": \"reboot\"}", b"{\"id\": \"_x\"}", b"{\"id\": 5}", b"{" * 100):
        eq(c.handle(junk, NOW), (None, None), "nothing to ack for %r" % junk[:10])


def case_commands_journal_bounded(root):
    fs = FolderFS(root)
    c = commands.Commands(fs, keep=5)
    for i in range(12):
        ack, action = c.handle(_cmd("r%d" % i, "reboot"), NOW)
        check(action is not None, "fresh id acts")
    eq([row[0] for row in json.loads(fs.read("cmds.json"))], ["r7", "r8", "r9", "r10", "r11"], "bounded")
    c2 = commands.Commands(fs, keep=5)
    eq(c2.handle(_cmd("r11", "reboot"), NOW)[1], None, "recent id remembered")
    check(c2.handle(_cmd("r0", "reboot"), NOW)[1] is not None, "oldest forgotten")
    fs.write("cmds.json", b"[[\"r1\", tr")
    c3 = commands.Commands(fs)
    eq(c3.problem, "cmds.json is corrupt; handled command ids forgotten", "corrupt journal reported")


def case_commands_flash_full(root):
    fs = FullFS(root)
    c = commands.Commands(fs)
    eq(c.handle(_cmd("f1", "reboot"), NOW), ({"id": "f1", "ok": False, "detail": "flash: cannot record the command id"},
                                              None), "no reboot without the journal")


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
