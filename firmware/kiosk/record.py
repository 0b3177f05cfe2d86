"""Binary records of the outbox: one event in ~40-60 bytes, JSON only at send time.

Frame (little-endian), the unit the outbox appends to a segment file:

    kind u8 | len u16 | payload (len bytes) | crc32 u32 over kind, len and payload

A frame that is cut short or fails its CRC is dropped by the reader, which then searches
byte by byte for the next good frame; one bad frame never takes others with it.

Kinds:
- CTX  (0x43 'C'): JSON object with the fields an event shares with its neighbours
  (`v`, `epoch`, `boot`, `lane`, `dir`, `config_hash`). The events after it in the same
  segment carry those values. Every segment starts with one, so a segment is self-describing;
  the outbox writes another whenever one of them changes (a config update, a new boot).
- 0x10 + i: compact event of type EVENT_TYPES[i]. Payload: presence bitmap u16, then the
  present fields of the type's table below in table order. Value encodings ("kinds"):
    I u32 (0xFFFFFFFF = null)          T u64 ms (all ones = null)
    E u8 index into a vocabulary (255 = null)
    C i16 hundredths, e.g. degC (-32768 = null)
    H u16 (0xFFFF = null)  B u8 (255 = null)  b bool u8 (2 = null)
    S u8 length + UTF-8 (255 = null), at most 254 bytes
    K code: u8 kind | colour << 2 | 0x10 if holder_ref, then holder_ref as 16 raw bytes
      (it is 32 hex digits: a keyed hash, never the raw code); 0xFF = null code
  A typical screening event with a verdict's holder_ref is 57 bytes framed, 41 without one.
- JSON (0x4A 'J'): the event minus the CTX fields as compact JSON. Used for anything the
  compact tables cannot hold exactly: unknown fields, a `roi` thermal patch, values out of
  range, more than two decimals. Up to MAX_PAYLOAD bytes.

encode_event() only returns a compact record after decoding it again and comparing it,
type-strictly, with the original: a record never changes what the gateway receives.
"""

import json
import struct

try:
    from binascii import crc32
except ImportError:  # ports built without binascii.crc32: the same CRC-32 in Python
    _CRC_TABLE = None

    def crc32(data, crc=0):
        global _CRC_TABLE
        if _CRC_TABLE is None:
            _CRC_TABLE = []
            for i in range(256):
                c = i
                for _ in range(8):
                    c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
                _CRC_TABLE.append(c)
        crc ^= 0xFFFFFFFF
        for byte in data:
            crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF

from kiosk import protocol

CTX = 0x43
JSON = 0x4A
COMPACT = 0x10
HEADER = 3
TRAILER = 4
OVERHEAD = HEADER + TRAILER
MAX_PAYLOAD = protocol.MAX_PAYLOAD + 64

CTX_KEYS = ("v", "epoch", "boot", "lane", "dir", "config_hash")

_COMMON = (("seq", "I", None), ("uptime_ms", "I", None), ("ts", "T", None))
TABLES = (
    # screening
    _COMMON + (("result", "E", protocol.RESULTS), ("measured", "E", protocol.RESULTS),
               ("temp_c", "C", None), ("skin_c", "C", None), ("ambient_c", "C", None),
               ("distance_cm", "H", None), ("code", "K", None), ("paired", "b", None),
               ("in_range", "b", None), ("uncertainty_c", "C", None), ("people", "B", None)),
    # scan
    _COMMON + (("code", "K", None), ("reason", "S", None), ("paired", "b", None)),
    # manual
    _COMMON + (("result", "E", protocol.MANUAL_RESULTS), ("temp_c", "C", None),
               ("operator", "S", None), ("code", "K", None), ("note", "S", None)),
    # fault
    _COMMON + (("part", "E", protocol.FAULT_PARTS), ("detail", "S", None), ("lost", "I", None),
               ("cleared", "b", None)),
    # boot
    _COMMON + (("fw", "S", None), ("board", "S", None), ("reset_cause", "S", None),
               ("safe_mode", "b", None)),
)

_NULL_I = 0xFFFFFFFF
_NULL_T = 0xFFFFFFFFFFFFFFFF
_NULL_C = -32768
_HEX = "0123456789abcdef"


class RecordError(ValueError):
    """A value the compact form cannot hold exactly (the caller falls back to JSON)."""


def context(body):
    """The CTX fields of an event body, as a dict (only those present)."""
    ctx = {}
    for key in CTX_KEYS:
        if key in body:
            ctx[key] = body[key]
    return ctx


def same(a, b):
    """Equal and of the same types all the way down (True != 1, 37 != 37.0 here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        for key in a:
            if key not in b or not same(a[key], b[key]):
                return False
        return True
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return False
        for i in range(len(a)):
            if not same(a[i], b[i]):
                return False
        return True
    return a == b


def frame(kind, payload):
    """kind + payload -> framed bytes with length and CRC."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise RecordError("record too large")
    out = bytearray(n + OVERHEAD)
    struct.pack_into("<BH", out, 0, kind, n)
    out[HEADER:HEADER + n] = payload
    struct.pack_into("<I", out, HEADER + n, crc32(memoryview(out)[:HEADER + n]) & 0xFFFFFFFF)
    return out


def check(buf, n):
    """CRC of a whole frame in buf[:HEADER + n + TRAILER]."""
    mv = memoryview(buf)
    want = struct.unpack_from("<I", buf, HEADER + n)[0]
    return crc32(mv[:HEADER + n]) & 0xFFFFFFFF == want


def encode_ctx(ctx):
    return frame(CTX, json.dumps(ctx).encode())


def decode_ctx(payload):
    ctx = json.loads(bytes(payload).decode())
    if not isinstance(ctx, dict):
        raise ValueError("context is not an object")
    return ctx


# ---- events ---------------------------------------------------------------------------------

def encode_event(body):
    """Event body -> framed record, compact when it round-trips exactly, else JSON."""
    etype = body.get("type")
    if etype in protocol.EVENT_TYPES:
        try:
            kind = COMPACT + protocol.EVENT_TYPES.index(etype)
            payload = _pack(body, TABLES[kind - COMPACT])
            if same(decode_event(kind, payload, context(body)), body):
                return frame(kind, payload)
        except (RecordError, ValueError, TypeError, KeyError, OverflowError, UnicodeError):
            pass
    rest = {}
    for key in body:
        if key not in CTX_KEYS:
            rest[key] = body[key]
    return frame(JSON, json.dumps(rest, separators=(",", ":")).encode())


def decode_event(kind, payload, ctx):
    """Payload of an event frame + the CTX in effect -> the event body."""
    body = dict(ctx)
    if kind == JSON:
        rest = json.loads(bytes(payload).decode())
        if not isinstance(rest, dict):
            raise ValueError("event is not an object")
        for key in rest:
            body[key] = rest[key]
        return body
    i = kind - COMPACT
    if not 0 <= i < len(TABLES):
        raise ValueError("unknown record kind")
    body["type"] = protocol.EVENT_TYPES[i]
    _unpack(payload, TABLES[i], body)
    return body


def is_event(kind):
    return kind == JSON or COMPACT <= kind < COMPACT + len(TABLES)


def valid_kind(kind):
    return kind == CTX or is_event(kind)


def event_seq(kind, payload, ctx):
    """seq of an event record without building the whole body when it is compact."""
    if kind != JSON:
        bits = struct.unpack_from("<H", payload, 0)[0]
        if bits & 1:
            return struct.unpack_from("<I", payload, 2)[0]
    return decode_event(kind, payload, ctx).get("seq")


def _pack(body, table):
    names = {"type": 1}
    for key in CTX_KEYS:
        names[key] = 1
    for entry in table:
        names[entry[0]] = 1
    for key in body:
        if key not in names:
            raise RecordError("field without a compact form: " + key)
    out = bytearray(2)
    bits = 0
    for i in range(len(table)):
        key, kind, vocab = table[i]
        if key not in body:
            continue
        bits |= 1 << i
        _put(out, kind, vocab, body[key])
    struct.pack_into("<H", out, 0, bits)
    return out


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _put(out, kind, vocab, v):
    if kind == "I":
        if v is None:
            v = _NULL_I
        elif not _is_int(v) or not 0 <= v < _NULL_I:
            raise RecordError("u32")
        out.extend(struct.pack("<I", v))
    elif kind == "T":
        if v is None:
            v = _NULL_T
        elif not _is_int(v) or not 0 <= v < _NULL_T:
            raise RecordError("u64")
        out.extend(struct.pack("<Q", v))
    elif kind == "E":
        out.append(255 if v is None else vocab.index(v))
    elif kind == "C":
        if v is None:
            n = _NULL_C
        else:
            if not isinstance(v, float):
                raise RecordError("hundredths need a float")
            n = int(round(v * 100))
            if not -32767 <= n <= 32767:
                raise RecordError("i16")
        out.extend(struct.pack("<h", n))
    elif kind == "H":
        if v is None:
            v = 0xFFFF
        elif not _is_int(v) or not 0 <= v < 0xFFFF:
            raise RecordError("u16")
        out.extend(struct.pack("<H", v))
    elif kind == "B":
        if v is None:
            v = 255
        elif not _is_int(v) or not 0 <= v < 255:
            raise RecordError("u8")
        out.append(v)
    elif kind == "b":
        if v is None:
            out.append(2)
        elif isinstance(v, bool):
            out.append(1 if v else 0)
        else:
            raise RecordError("bool")
    elif kind == "S":
        if v is None:
            out.append(255)
        else:
            if not isinstance(v, str):
                raise RecordError("str")
            raw = v.encode()
            if len(raw) > 254:
                raise RecordError("long text")
            out.append(len(raw))
            out.extend(raw)
    elif kind == "K":
        _put_code(out, v)
    else:
        raise RecordError("unknown kind")


def _put_code(out, code):
    if code is None:
        out.append(0xFF)
        return
    if not isinstance(code, dict) or len(code) != 3:
        raise RecordError("code")
    b = protocol.CODE_KINDS.index(code["kind"]) | (protocol.CODE_COLORS.index(code["color"]) << 2)
    ref = code["holder_ref"]
    if ref is None:
        out.append(b)
        return
    if not isinstance(ref, str) or len(ref) != 32:
        raise RecordError("holder_ref")
    for c in ref:
        if c not in _HEX:
            raise RecordError("holder_ref")
    out.append(b | 0x10)
    out.extend(bytes(int(ref[j:j + 2], 16) for j in range(0, 32, 2)))


def _unpack(payload, table, body):
    bits = struct.unpack_from("<H", payload, 0)[0]
    pos = 2
    for i in range(len(table)):
        if not bits & (1 << i):
            continue
        key, kind, vocab = table[i]
        if kind == "I":
            v = struct.unpack_from("<I", payload, pos)[0]
            pos += 4
            body[key] = None if v == _NULL_I else v
        elif kind == "T":
            v = struct.unpack_from("<Q", payload, pos)[0]
            pos += 8
            body[key] = None if v == _NULL_T else v
        elif kind == "E":
            v = payload[pos]
            pos += 1
            body[key] = None if v == 255 else vocab[v]
        elif kind == "C":
            v = struct.unpack_from("<h", payload, pos)[0]
            pos += 2
            body[key] = None if v == _NULL_C else v / 100
        elif kind == "H":
            v = struct.unpack_from("<H", payload, pos)[0]
            pos += 2
            body[key] = None if v == 0xFFFF else v
        elif kind == "B":
            v = payload[pos]
            pos += 1
            body[key] = None if v == 255 else v
        elif kind == "b":
            v = payload[pos]
            pos += 1
            body[key] = None if v == 2 else v == 1
        elif kind == "S":
            n = payload[pos]
            pos += 1
            if n == 255:
                body[key] = None
            else:
                body[key] = bytes(payload[pos:pos + n]).decode()
                pos += n
        elif kind == "K":
            v = payload[pos]
            pos += 1
            if v == 0xFF:
                body[key] = None
            else:
                ref = None
                if v & 0x10:
                    raw = payload[pos:pos + 16]
                    pos += 16
                    ref = "".join(_HEX[x >> 4] + _HEX[x & 15] for x in raw)
                body[key] = {"kind": protocol.CODE_KINDS[v & 3], "color": protocol.CODE_COLORS[(v >> 2) & 3],
                             "holder_ref": ref}
    if pos != len(payload):
        raise ValueError("record length does not match its fields")
