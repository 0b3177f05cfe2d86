"""The MQTT contract, version 1: topics, channels, payload builders and validators.

This file is THE contract between kiosk, gateway, simulator and tools (DESIGN.md section 4);
every other part imports it, none restates it. It runs unchanged under MicroPython 1.29 and
CPython, so it uses only `json`, `binascii` and plain types.

Topic: screening/v1/<checkpoint>/<kiosk>/<channel>. The gateway's own topics use the reserved
kiosk id `_gateway`: screening/v1/<checkpoint>/_gateway/<alert|report|summary>.

Every rejection raises ProtocolError with a short machine `reason` (the gateway counts rejects
by it) and a human `detail`.
"""

import binascii
import json

VERSION = 1
ROOT = "screening/v1"
# What a gateway subscribes to: every version, so kiosks speaking another one are counted, not unseen.
ALL_VERSIONS = "screening/#"
MAX_PAYLOAD = 16384  # bytes; larger payloads are rejected before decoding
MAX_ID = 32
MAX_DEPTH = 16  # objects/lists nested in canonical() (config settings); real settings are 2-3 deep
MAX_RAW_CODE = 2048  # a QR code holds at most ~2.9 kB; our passes are ~250 B
GATEWAY_ID = "_gateway"

# Channels: name -> (QoS, retained, message expiry in s or None).
STATUS = "status"
EVENT = "event"
TELEMETRY = "telemetry"
CONFIG = "config"
CMD = "cmd"
ACK = "ack"
VERIFY = "verify"
VERDICT = "verdict"
VERIFY_EXPIRY_S = 5
KIOSK_CHANNELS = {
    STATUS: (1, True, None),
    EVENT: (1, False, None),
    TELEMETRY: (0, False, None),
    CONFIG: (1, True, None),
    CMD: (1, False, None),
    ACK: (1, False, None),
    VERIFY: (1, False, VERIFY_EXPIRY_S),
    VERDICT: (1, False, VERIFY_EXPIRY_S),
}
# Direction: what a kiosk publishes, and what it subscribes to.
FROM_KIOSK = (STATUS, EVENT, TELEMETRY, ACK, VERIFY)
TO_KIOSK = (CONFIG, CMD, VERDICT)
# verify/verdict carry raw codes for a few seconds: never bridged, stored or dead-lettered.
NEVER_STORED = (VERIFY, VERDICT)

ALERT = "alert"
REPORT = "report"
SUMMARY = "summary"
GATEWAY_CHANNELS = {ALERT: (1, False, None), REPORT: (1, False, None), SUMMARY: (1, True, None)}

# Event types and their vocabularies.
SCREENING = "screening"
SCAN = "scan"
MANUAL = "manual"
FAULT = "fault"
BOOT = "boot"
EVENT_TYPES = (SCREENING, SCAN, MANUAL, FAULT, BOOT)
RESULTS = ("pass", "recheck", "fever", "invalid")
MANUAL_RESULTS = ("pass", "fever", "refused")
DIRECTIONS = ("in", "out")
CODE_KINDS = ("health", "vehicle", "id", "unknown")
PASS_KINDS = ("health", "vehicle")
COLORS = ("green", "yellow", "red")
# A kiosk without a verdict in time records "none": never green by default.
CODE_COLORS = COLORS + ("none",)
FAULT_PARTS = ("sensor", "air", "scanner", "flash", "config", "records_full", "link", "display", "watchdog")
COMMANDS = ("reboot", "selftest", "calibrate", "snapshot", "update")
STATES = ("online", "offline")


class ProtocolError(ValueError):
    """A message that breaks the contract. `reason` is short and countable."""

    def __init__(self, reason, detail=""):
        super().__init__(reason + (": " + detail if detail else ""))
        self.reason = reason
        self.detail = detail


# ---- ids and topics -------------------------------------------------------------------------

def _is_id_char(c):
    return ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c == "_" or c == "-"


def check_id(value, what="id"):
    """Checkpoint, kiosk, epoch and command ids: [A-Za-z0-9_-]{1,32}, not starting with '_'."""
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise ProtocolError("bad_id", what + " must be 1-32 characters")
    for c in value:
        if not _is_id_char(c):
            raise ProtocolError("bad_id", what + " has a character outside [A-Za-z0-9_-]")
    if value[0] == "_":
        raise ProtocolError("reserved_id", what + " may not start with '_' (reserved)")
    return value


def topic(checkpoint, kiosk, channel):
    check_id(checkpoint, "checkpoint")
    check_id(kiosk, "kiosk")
    if channel not in KIOSK_CHANNELS:
        raise ProtocolError("unknown_channel", str(channel))
    return ROOT + "/" + checkpoint + "/" + kiosk + "/" + channel


def gateway_topic(checkpoint, channel):
    check_id(checkpoint, "checkpoint")
    if channel not in GATEWAY_CHANNELS:
        raise ProtocolError("unknown_channel", str(channel))
    return ROOT + "/" + checkpoint + "/" + GATEWAY_ID + "/" + channel


def subscription(checkpoint="+", kiosk="+", channel="+"):
    """Topic filter, e.g. subscription(channel=EVENT) -> screening/v1/+/+/event."""
    return ROOT + "/" + checkpoint + "/" + kiosk + "/" + channel


def parse_topic(name):
    """-> (checkpoint, kiosk, channel); kiosk is GATEWAY_ID for the gateway's own topics."""
    parts = name.split("/")
    if len(parts) != 5 or parts[0] + "/" + parts[1] != ROOT:
        if len(parts) >= 2 and parts[0] == ROOT.split("/")[0] and parts[1] != ROOT.split("/")[1]:
            raise ProtocolError("bad_version", "topic version " + parts[1])
        raise ProtocolError("bad_topic", name[:80])
    checkpoint, kiosk, channel = parts[2], parts[3], parts[4]
    check_id(checkpoint, "checkpoint")
    if kiosk == GATEWAY_ID:
        if channel not in GATEWAY_CHANNELS:
            raise ProtocolError("unknown_channel", channel)
        return checkpoint, kiosk, channel
    check_id(kiosk, "kiosk")
    if channel not in KIOSK_CHANNELS:
        raise ProtocolError("unknown_channel", channel)
    return checkpoint, kiosk, channel


def qos(channel):
    return (KIOSK_CHANNELS.get(channel) or GATEWAY_CHANNELS[channel])[0]


def retained(channel):
    return (KIOSK_CHANNELS.get(channel) or GATEWAY_CHANNELS[channel])[1]


def expiry_s(channel):
    return (KIOSK_CHANNELS.get(channel) or GATEWAY_CHANNELS[channel])[2]


# ---- field checks ---------------------------------------------------------------------------
# A schema is a tuple of (field, kind, required). kind is one of the type letters below, or a
# tuple of allowed string values. None is accepted only where kind ends in "?".

def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    # JSON has no NaN/Infinity; CPython's json module lets them through, so check here.
    return v == v and v not in (float("inf"), float("-inf"))


def _check_kind(field, value, kind):
    if isinstance(kind, tuple):
        if value not in kind:
            raise ProtocolError("bad_value", field + " must be one of " + ",".join(kind))
        return
    nullable = kind[-1] == "?"
    if nullable:
        if value is None:
            return
        kind = kind[:-1]
    if value is None:
        raise ProtocolError("bad_type", field + " may not be null")
    if kind == "int":
        ok = _is_int(value)
    elif kind == "uint":
        ok = _is_int(value) and value >= 0
    elif kind == "num":
        ok = _is_number(value)
    elif kind == "str":
        ok = isinstance(value, str)
    elif kind == "id":
        check_id(value, field)
        return
    elif kind == "bool":
        ok = isinstance(value, bool)
    elif kind == "obj":
        ok = isinstance(value, dict)
    elif kind == "list":
        ok = isinstance(value, list)
    else:
        raise ProtocolError("bad_schema", kind)
    if not ok:
        raise ProtocolError("bad_type", field + " must be " + kind)


def check_fields(obj, schema):
    """Check `obj` against `schema`; unknown fields are kept and ignored."""
    for field, kind, required in schema:
        if field not in obj:
            if required:
                raise ProtocolError("missing_field", field)
            continue
        _check_kind(field, obj[field], kind)
    return obj


def _check_version(obj, required):
    if "v" not in obj:
        if required:
            raise ProtocolError("missing_field", "v")
        return
    v = obj["v"]
    if not _is_int(v):
        raise ProtocolError("bad_type", "v must be int")
    if v != VERSION:
        raise ProtocolError("bad_version", "v=" + str(v))


# ---- schemas --------------------------------------------------------------------------------

STATUS_ONLINE = (
    ("state", STATES, True), ("fw", "str", True), ("board", "str", True), ("boot", "uint", True),
    ("epoch", "id", True), ("config_hash", "str", True), ("ts", "uint?", True),
)
STATUS_OFFLINE = (("state", STATES, True), ("epoch", "id", False), ("boot", "uint", False))

EVENT_COMMON = (
    ("v", "int", True), ("epoch", "id", True), ("seq", "uint", True), ("boot", "uint", True),
    ("ts", "uint?", True), ("uptime_ms", "uint", True), ("lane", "id", True),
    ("dir", DIRECTIONS, True), ("type", EVENT_TYPES, True), ("config_hash", "str", True),
)
CODE = (("kind", CODE_KINDS, True), ("color", CODE_COLORS, True), ("holder_ref", "str?", True))
EVENT_BY_TYPE = {
    SCREENING: (
        ("result", RESULTS, True), ("temp_c", "num?", True), ("skin_c", "num?", True),
        ("ambient_c", "num?", True), ("distance_cm", "uint?", True), ("code", "obj?", True),
        ("paired", "bool", False), ("roi", "obj", False),
    ),
    SCAN: (("code", "obj", True), ("reason", "str", False)),
    MANUAL: (
        ("result", MANUAL_RESULTS, True), ("temp_c", "num?", True), ("operator", "str", True),
        ("code", "obj?", False), ("note", "str", False),
    ),
    FAULT: (("part", FAULT_PARTS, True), ("detail", "str", True), ("lost", "uint", False),
            ("cleared", "bool", False)),
    BOOT: (("fw", "str", True), ("board", "str", True), ("reset_cause", "str", False),
           ("safe_mode", "bool", False)),
}
ROI = (("w", "uint", True), ("h", "uint", True), ("t", "list", True))
TELEMETRY_FIELDS = (
    ("v", "int", True), ("ts", "uint?", True), ("uptime_ms", "uint", True), ("free_mem", "uint?", False),
    ("rssi", "int?", False), ("fps", "num?", False), ("outbox", "uint?", False), ("ta", "num?", False),
    ("vdd", "num?", False), ("air_c", "num?", False), ("last_error", "str?", False),
)
CONFIG_FIELDS = (("v", "int", True), ("settings", "obj", True))
CMD_FIELDS = (("id", "id", True), ("name", COMMANDS, True), ("args", "obj", True), ("expires", "uint", True))
ACK_FIELDS = (("id", "id", True), ("ok", "bool", True), ("detail", "str", True))
VERIFY_FIELDS = (("id", "id", True), ("kind", CODE_KINDS, True), ("raw", "str", True))
VERDICT_FIELDS = (
    ("id", "id", True), ("color", CODE_COLORS, True), ("valid", "bool", True), ("reason", "str", True),
    ("holder_ref", "str?", True),
)
ALERT_FIELDS = (("v", "int", True), ("id", "str", True), ("kind", "str", True), ("ts", "uint", True),
                ("kiosk", "str?", False), ("state", "str", False))
REPORT_FIELDS = (("v", "int", True), ("day", "str", True), ("version", "uint", True), ("totals", "obj", True))
SUMMARY_FIELDS = (("v", "int", True), ("ts", "uint", True), ("counts", "obj", True))


def _check_code(code):
    check_fields(code, CODE)


def validate_event(obj):
    _check_version(obj, True)
    check_fields(obj, EVENT_COMMON)
    schema = EVENT_BY_TYPE[obj["type"]]
    check_fields(obj, schema)
    # Only where the type's schema defines them: elsewhere `code`/`roi` are unknown fields, kept.
    names = [f[0] for f in schema]
    code = obj.get("code")
    if code is not None and "code" in names:
        _check_code(code)
    roi = obj.get("roi")
    if roi is not None and "roi" in names:
        check_fields(roi, ROI)
        t = roi["t"]
        if len(t) != roi["w"] * roi["h"] or not all(_is_number(x) for x in t):
            raise ProtocolError("bad_value", "roi.t must hold w*h numbers")
    return obj


def validate(channel, obj):
    """Check a decoded payload for `channel`; return it (unknown fields kept) or raise."""
    if not isinstance(obj, dict):
        raise ProtocolError("not_object", "payload must be a JSON object")
    if channel == EVENT:
        return validate_event(obj)
    if channel == STATUS:
        _check_version(obj, False)
        return check_fields(obj, STATUS_ONLINE if obj.get("state") == "online" else STATUS_OFFLINE)
    schema = {
        TELEMETRY: TELEMETRY_FIELDS, CONFIG: CONFIG_FIELDS, CMD: CMD_FIELDS, ACK: ACK_FIELDS,
        VERIFY: VERIFY_FIELDS, VERDICT: VERDICT_FIELDS, ALERT: ALERT_FIELDS, REPORT: REPORT_FIELDS,
        SUMMARY: SUMMARY_FIELDS,
    }.get(channel)
    if schema is None:
        raise ProtocolError("unknown_channel", str(channel))
    _check_version(obj, schema[0][0] == "v")
    check_fields(obj, schema)
    if channel == VERIFY and len(obj["raw"]) > MAX_RAW_CODE:
        raise ProtocolError("too_large", "raw code over " + str(MAX_RAW_CODE) + " characters")
    return obj


def _no_constant(name):
    raise ValueError("JSON has no " + name)


# CPython's json accepts NaN/Infinity/-Infinity, JSON does not, and MicroPython's parser refuses
# them: reject them on CPython too, so both interpreters say "not_json".
try:
    json.loads("0", parse_constant=_no_constant)
    _LOADS_OPTS = {"parse_constant": _no_constant}
except TypeError:  # MicroPython: json.loads takes no keywords
    _LOADS_OPTS = {}


def decode(payload):
    """bytes -> dict: size limit, UTF-8, JSON object. Does not check the schema."""
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError("too_large", str(len(payload)) + " bytes > " + str(MAX_PAYLOAD))
    try:
        text = bytes(payload).decode("utf-8")
    except UnicodeError:
        raise ProtocolError("not_utf8", "payload is not UTF-8")
    try:
        obj = json.loads(text, **_LOADS_OPTS)
    except (ValueError, RuntimeError):  # RuntimeError: CPython's RecursionError on deep nesting
        raise ProtocolError("not_json", "payload is not JSON")
    if not isinstance(obj, dict):
        raise ProtocolError("not_object", "payload must be a JSON object")
    return obj


def parse_message(topic_name, payload):
    """Topic + payload bytes -> (checkpoint, kiosk, channel, body), fully validated."""
    checkpoint, kiosk, channel = parse_topic(topic_name)
    # A retained status, config or summary is cleared with an empty payload: say so, not not_json.
    if len(payload) == 0 and retained(channel):
        raise ProtocolError("empty", "empty " + channel + " (retained message cleared)")
    return checkpoint, kiosk, channel, validate(channel, decode(payload))


def encode(obj):
    """dict -> compact UTF-8 JSON bytes, size-checked."""
    data = json.dumps(obj, separators=(",", ":")).encode()
    if len(data) > MAX_PAYLOAD:
        raise ProtocolError("too_large", str(len(data)) + " bytes > " + str(MAX_PAYLOAD))
    return data


# ---- builders -------------------------------------------------------------------------------
# Builders return validated dicts; `encode()` turns them into bytes at send time.

def status_online(fw, board, boot, epoch, config_hash, ts):
    return validate(STATUS, {"state": "online", "fw": fw, "board": board, "boot": boot, "epoch": epoch,
                             "config_hash": config_hash, "ts": ts})


def status_offline(epoch, boot):
    """The LWT: the broker publishes it, retained, when the kiosk vanishes without a clean goodbye."""
    return validate(STATUS, {"state": "offline", "epoch": epoch, "boot": boot})


def event(epoch, seq, boot, ts, uptime_ms, lane, direction, etype, config_hash, fields):
    body = {"v": VERSION, "epoch": epoch, "seq": seq, "boot": boot, "ts": ts, "uptime_ms": uptime_ms,
            "lane": lane, "dir": direction, "type": etype, "config_hash": config_hash}
    for key in fields:
        if key in body:
            raise ProtocolError("bad_value", "field " + key + " is reserved")
        body[key] = fields[key]
    return validate_event(body)


def code_info(kind, color, holder_ref):
    return check_fields({"kind": kind, "color": color, "holder_ref": holder_ref}, CODE)


def telemetry(uptime_ms, ts, **values):
    body = {"v": VERSION, "uptime_ms": uptime_ms, "ts": ts}
    body.update(values)
    return validate(TELEMETRY, body)


def command(cmd_id, name, args, expires):
    return validate(CMD, {"id": cmd_id, "name": name, "args": args, "expires": expires})


def ack(cmd_id, ok, detail):
    return validate(ACK, {"id": cmd_id, "ok": ok, "detail": detail})


def verify(req_id, kind, raw):
    return validate(VERIFY, {"id": req_id, "kind": kind, "raw": raw})


def verdict(req_id, color, valid, reason, holder_ref):
    return validate(VERDICT, {"id": req_id, "color": color, "valid": valid, "reason": reason,
                              "holder_ref": holder_ref})


def config_message(settings):
    return validate(CONFIG, {"v": VERSION, "settings": settings})


def dedup_key(checkpoint, kiosk, event_body):
    """The identity of an event across retries, reconnects and gateway restarts."""
    return (checkpoint, kiosk, event_body["epoch"], event_body["seq"])


# ---- canonical form and hashes --------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def _json_str(s):
    # CPython's json.dumps (ensure_ascii) form; MicroPython's json.dumps writes non-ASCII raw and
    # \b \f as \u escapes, which would give the two interpreters different config hashes.
    out = ['"']
    for c in s:
        e = _ESCAPES.get(c)
        if e is not None:
            out.append(e)
            continue
        n = ord(c)
        if 0x20 <= n < 0x7F:
            out.append(c)
        elif n < 0x10000:
            out.append("\\u%04x" % n)
        else:
            n -= 0x10000
            out.append("\\u%04x\\u%04x" % (0xD800 | (n >> 10), 0xDC00 | (n & 0x3FF)))
    out.append('"')
    return "".join(out)


def _canonical_value(v, depth):
    if isinstance(v, str):
        return _json_str(v)
    if isinstance(v, bool) or v is None or _is_int(v):
        return json.dumps(v)
    if isinstance(v, float):
        # 6 significant digits: what a 32-bit float (ESP32) and a double (gateway) agree on.
        return "%.6g" % v
    if isinstance(v, dict):
        return canonical(v, depth)
    if isinstance(v, (list, tuple)):
        _check_depth(depth)
        return "[" + ",".join(_canonical_value(x, depth + 1) for x in v) + "]"
    raise ProtocolError("bad_type", "cannot encode " + str(type(v)))


def _check_depth(depth):
    # canonical() recurses: a hostile config nested thousands deep (16 KiB allow it, and MicroPython's
    # json parses it) must be a ProtocolError, not a RecursionError on the gateway or the kiosk.
    if depth > MAX_DEPTH:
        raise ProtocolError("bad_value", "nested deeper than " + str(MAX_DEPTH))


def canonical(obj, depth=1):
    """Deterministic JSON text (sorted keys, no spaces) that MicroPython and CPython agree on."""
    _check_depth(depth)
    for k in obj:
        if not isinstance(k, str):
            raise ProtocolError("bad_type", "object keys must be strings")
    keys = sorted(obj)
    return "{" + ",".join(_json_str(k) + ":" + _canonical_value(obj[k], depth + 1) for k in keys) + "}"


def config_hash(settings):
    """Short hash of a settings dict; kiosk and gateway compute the same value."""
    import hashlib

    digest = hashlib.sha256(canonical(settings).encode()).digest()
    return binascii.hexlify(digest[:4]).decode()


# ---- signed passes (health codes, vehicle passes) --------------------------------------------
# QR text: "SP1." + b64url(body) + "." + b64url(signature)
#   body = canonical JSON {"h": holder id, "k": kind, "c": colour, "iat": issued, "exp": expires,
#                          "kid": issuer key id}, times in UTC Unix seconds
#   signature = Ed25519 over the ASCII bytes of "SP1." + b64url(body)
# The kiosk only parses (to tell kinds apart); the gateway verifies against its trust list.

PASS_PREFIX = "SP1."
PASS_FIELDS = (("h", "str", True), ("k", PASS_KINDS, True), ("c", COLORS, True), ("iat", "uint", True),
               ("exp", "uint", True), ("kid", "id", True))
MAX_HOLDER = 64


def b64url_encode(data):
    text = binascii.b2a_base64(data).decode().strip()
    return text.replace("+", "-").replace("/", "_").rstrip("=")


def b64url_decode(text):
    for c in text:
        if not (_is_id_char(c)):
            raise ProtocolError("bad_pass", "not base64url")
    try:
        data = binascii.a2b_base64(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
    except ValueError:
        raise ProtocolError("bad_pass", "not base64url")
    # The last character may carry unused bits: "QUJDRA" and "QUJDRB" both decode to b"ABCD".
    # Accept only the canonical form, so one pass has exactly one QR text.
    if b64url_encode(data) != text:
        raise ProtocolError("bad_pass", "not canonical base64url")
    return data


def pass_body(holder, kind, color, issued, expires, key_id):
    body = {"h": holder, "k": kind, "c": color, "iat": issued, "exp": expires, "kid": key_id}
    check_fields(body, PASS_FIELDS)
    if not 1 <= len(holder) <= MAX_HOLDER:
        raise ProtocolError("bad_pass", "holder id must be 1-64 characters")
    if expires <= issued:
        raise ProtocolError("bad_pass", "expires before it is issued")
    return body


def pass_signing_input(body):
    """The bytes an issuer signs: the QR text up to (not including) the signature."""
    return (PASS_PREFIX + b64url_encode(canonical(body).encode())).encode()


def encode_pass(body, signature):
    if len(signature) != 64:
        raise ProtocolError("bad_pass", "Ed25519 signatures are 64 bytes")
    return pass_signing_input(body).decode() + "." + b64url_encode(signature)


def is_signed_pass(text):
    return text.startswith(PASS_PREFIX)


def decode_pass(text):
    """QR text -> (body, signing_input bytes, signature bytes). Checks form, not the signature."""
    if not is_signed_pass(text):
        raise ProtocolError("bad_pass", "not a signed pass")
    parts = text.split(".")
    if len(parts) != 3:
        raise ProtocolError("bad_pass", "expected SP1.<body>.<signature>")
    raw_body = b64url_decode(parts[1])
    signature = b64url_decode(parts[2])
    if len(signature) != 64:
        raise ProtocolError("bad_pass", "signature is not 64 bytes")
    try:
        body = json.loads(raw_body.decode())
    except (UnicodeError, ValueError):
        raise ProtocolError("bad_pass", "body is not JSON")
    if not isinstance(body, dict):
        raise ProtocolError("bad_pass", "body is not an object")
    try:
        pass_body(body.get("h"), body.get("k"), body.get("c"), body.get("iat"), body.get("exp"),
                  body.get("kid"))
    except ProtocolError as err:
        raise ProtocolError("bad_pass", err.detail or err.reason)
    except TypeError:
        raise ProtocolError("bad_pass", "missing fields")
    return body, (parts[0] + "." + parts[1]).encode(), signature
