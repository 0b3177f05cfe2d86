"""The payload table, expanded into (topic, payload bytes, expected verdict) cases.

Portable on purpose: the same file runs under CPython (pytest) and under the MicroPython unix port
(`run_micropython`), so both interpreters judge the same fixtures with `kiosk.protocol` and the
tests compare their verdicts. Only `json` and `binascii`, no pathlib, no f-strings.
"""

import binascii
import json

ACCEPTED = None
SAME = "same"  # micropython_expected when MicroPython must agree with the table


def _read(path, binary=False):
    with open(path, "rb" if binary else "r") as f:
        return f.read()


def load_table(payload_dir):
    return json.loads(_read(payload_dir + "/cases.json"))


def fixture(payload_dir, name):
    return json.loads(_read(payload_dir + "/valid/" + name + ".json"))


def channel_of(name):
    return name.split(".")[0]


def topic_for(table, channel):
    kiosk = "_gateway" if channel in table["gateway_channels"] else table["kiosk"]
    return "screening/v1/" + table["checkpoint"] + "/" + kiosk + "/" + channel


def encode(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _walk(obj, path):
    """-> (parent dict, last key) for a dotted path such as "code.holder_ref"."""
    keys = path.split(".")
    for key in keys[:-1]:
        obj = obj[key]
    return obj, keys[-1]


def _set(obj, path, value):
    parent, key = _walk(obj, path)
    parent[key] = value


def _delete(obj, path):
    parent, key = _walk(obj, path)
    del parent[key]


def _payload(payload_dir, row):
    if "file" in row:
        return _read(payload_dir + "/invalid/" + row["file"], True)
    if "hex" in row:
        return binascii.unhexlify(row["hex"])
    if "base" not in row:
        text = row.get("text", "")
        for key in ("repeat", "then"):
            if key in row:
                text += row[key][0] * row[key][1]
        return (text + row.get("end", "")).encode()
    body = fixture(payload_dir, row["base"])
    for path in row.get("set", {}):
        _set(body, path, row["set"][path])
    for path in row.get("fill", {}):
        _set(body, path, "A" * row["fill"][path])
    for path in row.get("del", ()):
        _delete(body, path)
    if "pad_to" in row:
        body["x_pad"] = ""
        body["x_pad"] = "x" * (row["pad_to"] - len(encode(body)))
    return encode(body)


def cases(payload_dir):
    """-> list of (name, topic, payload, reason, detail, micropython_reason).

    reason None = accepted; detail None = not checked; micropython_reason SAME = as reason.
    """
    table = load_table(payload_dir)
    out = []
    for name in table["valid"]:
        ch = channel_of(name)
        out.append(("valid." + name, topic_for(table, ch), encode(fixture(payload_dir, name)), ACCEPTED, None, SAME))
    for name in table["valid"]:
        ch = channel_of(name)
        required = table["required"][name]
        body = fixture(payload_dir, name)
        for path in required:
            b = fixture(payload_dir, name)
            _delete(b, path)
            leaf = path.split(".")[-1]
            out.append(("missing." + name + "." + path, topic_for(table, ch), encode(b), "missing_field", leaf, SAME))
        for key in sorted(body):
            if key not in required:
                b = fixture(payload_dir, name)
                del b[key]
                out.append(("optional." + name + "." + key, topic_for(table, ch), encode(b), ACCEPTED, None, SAME))
    for row in table["invalid"]:
        ch = channel_of(row["base"]) if "base" in row else row["channel"]
        topic = row["topic"] if "topic" in row else topic_for(table, ch)
        mp = row["micropython"] if "micropython" in row else SAME
        out.append((row["name"], topic, _payload(payload_dir, row), row["reason"], None, mp))
    return out


def verdicts(payload_dir, protocol):
    """Judge every case with `protocol`: -> list of [name, reason, detail, canonical body or None]."""
    results = []
    for name, topic, payload, _reason, _detail, _mp in cases(payload_dir):
        try:
            body = protocol.parse_message(topic, payload)[3]
        except protocol.ProtocolError as err:
            results.append([name, err.reason, err.detail, None])
            continue
        try:
            canon = protocol.canonical(body)
        except protocol.ProtocolError as err:
            canon = "!" + err.reason
        results.append([name, None, None, canon])
    return results
