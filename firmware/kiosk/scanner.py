"""QR/barcode scanner framing: bytes from the UART -> complete, de-duplicated codes.

API (pure logic: no UART, no clock; the app passes bytes and a millisecond time in):

    s = Scanner(max_line=MAX_LINE, repeat_ms=REPEAT_MS, idle_ms=IDLE_MS, ticks_diff=None)
    codes = s.feed(data, now_ms=None)   # bytes in -> list of str codes completed by this chunk
    code_kind(text)                     # -> "health" | "vehicle" | "id" | "unknown"
    s.counts                            # {"overlong", "control", "not_utf8", "partial", "repeat": int}
    s.accepted, s.dropped               # codes returned / lines rejected (all reasons but "repeat")
    s.stats()                           # copy of counts plus accepted and dropped, for telemetry

Framing, as common UART QR modules (GM65, GM861, MH-ET Live, Honeywell N56xx in UART mode) send
it: each code is one line ended by CR, LF or CRLF (a lone CR, a lone LF and CRLF all end one line;
the empty "line" between CR and LF is ignored). The state machine resyncs at the next terminator
after anything it rejects, in the manner of ESPHome's rdm6300 reader:

* overlong: more than `max_line` bytes without a terminator. The line is dropped whole and counted
  once; the rest of it is skipped, never buffered (a 64 KiB burst costs no memory).
* control: a byte below 0x20 (other than CR/LF) or DEL in a line. QR payloads we accept are text;
  NUL and friends come from a wrong baud rate or line noise. The whole line is rejected.
* not_utf8: the line is not strict UTF-8 (checked by hand: MicroPython's decoder lets overlong
  forms and surrogates through, CPython's does not, and both must agree).
* partial: with `now_ms` given, a line left unfinished for more than `idle_ms` is a broken frame
  (scanner reset, cable pulled mid-code); it is dropped so it cannot glue onto the next code.
* repeat: the same code again within `repeat_ms` of its last sighting. Scanners in continuous
  mode re-read a phone held in front of them several times a second; the window slides with each
  sighting, so one long hold is one code. Needs `now_ms`; without it nothing is suppressed.

Memory: one bytearray of `max_line` bytes and a length counter, allocated once. Raw code text
lives only in RAM (the last code, for repeat suppression); callers must not log or store it.
"""

from kiosk import protocol

MAX_LINE = protocol.MAX_RAW_CODE  # bytes; a version-40 QR in byte mode holds 2953, ours ~250
REPEAT_MS = 3000
IDLE_MS = 500  # a 300-byte code at 9600 baud takes ~310 ms on the wire

REASONS = ("overlong", "control", "not_utf8", "partial", "repeat")

_READ = 0  # collecting a line
_SKIP = 1  # rejected line: wait for its terminator

# GB 11643-1999 check digit: weights 2^(17-i) mod 11 for positions 0..16; sum mod 11 -> character.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def utf8_ok(buf, n):
    """Strict UTF-8 over buf[:n]: shortest forms only, no surrogates, nothing above U+10FFFF."""
    i = 0
    while i < n:
        b = buf[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            need = 2
            lo, hi = (0xA0, 0xBF) if b == 0xE0 else (0x80, 0x9F) if b == 0xED else (0x80, 0xBF)
        elif 0xF0 <= b <= 0xF4:
            need = 3
            lo, hi = (0x90, 0xBF) if b == 0xF0 else (0x80, 0x8F) if b == 0xF4 else (0x80, 0xBF)
        else:
            return False
        if i + need >= n:
            return False  # truncated sequence
        c = buf[i + 1]
        if c < lo or c > hi:
            return False
        for k in range(2, need + 1):
            c = buf[i + k]
            if c < 0x80 or c > 0xBF:
                return False
        i += need + 1
    return True


class Scanner:
    def __init__(self, max_line=MAX_LINE, repeat_ms=REPEAT_MS, idle_ms=IDLE_MS, ticks_diff=None):
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._buf = bytearray(max_line)
        self._mv = memoryview(self._buf)
        self._n = 0
        self._max = max_line
        self._state = _READ
        self.repeat_ms = repeat_ms
        self.idle_ms = idle_ms
        # MicroPython's ticks wrap: pass time.ticks_diff (or the board clock's) to compare them.
        self._diff = ticks_diff
        self._last_code = None
        self._last_seen = 0
        self._last_byte = None  # time of the last chunk that left a line unfinished
        self.counts = {"overlong": 0, "control": 0, "not_utf8": 0, "partial": 0, "repeat": 0}
        self.accepted = 0

    @property
    def dropped(self):
        c = self.counts
        return c["overlong"] + c["control"] + c["not_utf8"] + c["partial"]

    def stats(self):
        out = dict(self.counts)
        out["accepted"] = self.accepted
        out["dropped"] = self.dropped
        return out

    def _elapsed(self, now, then):
        if self._diff is not None:
            return self._diff(now, then)
        return now - then

    def _reject(self, reason):
        self.counts[reason] += 1
        self._n = 0
        self._state = _SKIP

    def feed(self, data, now_ms=None):
        """Bytes in -> list of decoded code strings completed by this chunk (repeats left out)."""
        codes = []
        if not data:
            return codes
        busy = self._n > 0 or self._state == _SKIP
        if busy and now_ms is not None and self._last_byte is not None and \
                self._elapsed(now_ms, self._last_byte) > self.idle_ms:
            # The previous chunk left a frame open and nothing followed in time: a broken frame.
            if self._state == _READ:
                self.counts["partial"] += 1
            self._n = 0
            self._state = _READ
        buf = self._buf
        for byte in data:
            if byte == 13 or byte == 10:
                if self._state == _SKIP:
                    self._state = _READ
                elif self._n:
                    self._finish(codes, now_ms)
                continue
            if self._state == _SKIP:
                continue
            if byte < 0x20 or byte == 0x7F:
                self._reject("control")
            elif self._n >= self._max:
                self._reject("overlong")
            else:
                buf[self._n] = byte
                self._n += 1
        self._last_byte = now_ms if (self._n or self._state == _SKIP) else None
        return codes

    def _finish(self, codes, now_ms):
        n = self._n
        self._n = 0
        if not utf8_ok(self._buf, n):
            self.counts["not_utf8"] += 1
            return
        text = str(self._mv[:n], "utf-8")
        if now_ms is not None:
            if text == self._last_code and self._elapsed(now_ms, self._last_seen) <= self.repeat_ms:
                self._last_seen = now_ms
                self.counts["repeat"] += 1
                return
            self._last_code = text
            self._last_seen = now_ms
        self.accepted += 1
        codes.append(text)

    def forget(self):
        """Drop the remembered last code (raw code text lives in RAM only as briefly as needed)."""
        self._last_code = None


def id_check_ok(text):
    """A Chinese resident identity number (GB 11643-1999): 17 digits, then the check character.

    Besides the ISO 7064 MOD 11-2 check character, the birth date's month and day must be
    plausible (positions 10-13), which rules out most 18-digit numbers that are something else.
    """
    if len(text) != 18:
        return False
    total = 0
    for i in range(17):
        c = text[i]
        if not "0" <= c <= "9":
            return False
        total += (ord(c) - 48) * _ID_WEIGHTS[i]
    if text[0] == "0":
        return False  # region codes start 1-8 (GB/T 2260)
    month = (ord(text[10]) - 48) * 10 + ord(text[11]) - 48
    day = (ord(text[12]) - 48) * 10 + ord(text[13]) - 48
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        return False
    last = text[17]
    if last == "x":
        last = "X"
    return _ID_CHECK[total % 11] == last


def code_kind(text):
    """'health' / 'vehicle' for a well-formed signed pass of that kind (per the contract: the
    kiosk checks the form, the gateway the signature), 'id' for a resident ID number whose check
    digit is right, else 'unknown' (a damaged signed pass too: the gateway decides what it is)."""
    if protocol.is_signed_pass(text):
        try:
            return protocol.decode_pass(text)[0]["k"]
        except protocol.ProtocolError:
            return "unknown"
    if id_check_ok(text):
        return "id"
    return "unknown"
