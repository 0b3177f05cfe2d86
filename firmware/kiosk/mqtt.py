"""MQTT 5 packets: the protocol half of the kiosk's link (no sockets, no asyncio here).

Only what a kiosk needs (MQTT 5.0 spec, OASIS 2019): CONNECT with a will, CONNACK, PUBLISH
QoS 0/1 with message expiry, PUBACK with reason codes, SUBSCRIBE/SUBACK, PINGREQ/PINGRESP,
DISCONNECT. Builders return bytes; `read_packet` parses from any object with an async
`readexactly(n)` (asyncio streams on both MicroPython and CPython).
"""

import struct

CONNECT = 0x10
CONNACK = 0x20
PUBLISH = 0x30
PUBACK = 0x40
SUBSCRIBE = 0x82
SUBACK = 0x90
PINGREQ = 0xC0
PINGRESP = 0xD0
DISCONNECT = 0xE0

# Property identifiers (spec 2.2.2.2) that the kiosk writes or reads.
P_MESSAGE_EXPIRY = 0x02
P_SESSION_EXPIRY = 0x11
P_RECEIVE_MAXIMUM = 0x21
P_SERVER_KEEP_ALIVE = 0x13
P_REASON_STRING = 0x1F

MAX_REMAINING = 268435455


class MQTTError(OSError):
    """A broken or refused MQTT exchange; `code` is the MQTT 5 reason code when there is one."""

    def __init__(self, message, code=0):
        super().__init__(message)
        self.code = code


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def _str(text):
    data = text.encode() if isinstance(text, str) else bytes(text)
    return struct.pack("!H", len(data)) + data


def _packet(first_byte, body):
    if len(body) > MAX_REMAINING:
        raise MQTTError("packet too large")
    return bytes([first_byte]) + varint(len(body)) + body


def _props(items):
    """items: list of (id, bytes value already encoded)."""
    body = b"".join(bytes([pid]) + value for pid, value in items)
    return varint(len(body)) + body


def connect(client_id, keepalive_s, session_expiry_s=0, clean_start=True, will=None, username=None,
            password=None):
    """will = (topic, payload bytes, qos, retain) or None."""
    flags = 0x02 if clean_start else 0
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props = [(P_SESSION_EXPIRY, struct.pack("!I", session_expiry_s))] if session_expiry_s else []
    body = _str("MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive_s) + _props(props)
    body += _str(client_id)
    if will:
        body += _props([]) + _str(will[0]) + _str(will[1])
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _str(password)
    return _packet(CONNECT, body)


def publish(topic, payload, qos=0, retain=False, packet_id=0, dup=False, expiry_s=None):
    first = PUBLISH | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0)
    props = [(P_MESSAGE_EXPIRY, struct.pack("!I", expiry_s))] if expiry_s else []
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + _props(props) + bytes(payload)
    return _packet(first, body)


def puback(packet_id, reason=0):
    return _packet(PUBACK, struct.pack("!HB", packet_id, reason) + b"\x00")


def subscribe(packet_id, filters):
    """filters: list of (topic filter, qos). No Local is set: a kiosk never hears itself."""
    body = struct.pack("!H", packet_id) + _props([])
    for name, qos in filters:
        body += _str(name) + bytes([qos | 0x04])
    return _packet(SUBSCRIBE, body)


PINGREQ_PACKET = bytes([PINGREQ, 0])


def disconnect(reason=0):
    return bytes([DISCONNECT, 2, reason, 0])


# ---- reading --------------------------------------------------------------------------------

async def _read_varint(stream):
    value = 0
    shift = 0
    for _ in range(4):
        byte = (await stream.readexactly(1))[0]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value
        shift += 7
    raise MQTTError("malformed remaining length")


async def read_packet(stream, max_size=32768):
    """-> (first byte, body bytes). EOF raises EOFError (CPython) / OSError; both mean 'link down'."""
    header = await stream.readexactly(1)
    if not header:
        raise MQTTError("connection closed")
    length = await _read_varint(stream)
    if length > max_size:
        raise MQTTError("packet of " + str(length) + " bytes is over our limit")
    body = await stream.readexactly(length) if length else b""
    if len(body) != length:
        raise MQTTError("connection closed mid-packet")
    return header[0], body


def _parse_varint(data, pos):
    value = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _parse_props(data, pos):
    """-> (dict of the properties we understand, position after the block)."""
    length, pos = _parse_varint(data, pos)
    end = pos + length
    props = {}
    while pos < end:
        pid = data[pos]
        pos += 1
        if pid in (P_MESSAGE_EXPIRY, P_SESSION_EXPIRY):
            props[pid] = struct.unpack_from("!I", data, pos)[0]
            pos += 4
        elif pid in (P_RECEIVE_MAXIMUM, P_SERVER_KEEP_ALIVE, 0x22, 0x23):
            props[pid] = struct.unpack_from("!H", data, pos)[0]
            pos += 2
        elif pid in (0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A):
            props[pid] = data[pos]
            pos += 1
        elif pid == 0x27:
            props[pid] = struct.unpack_from("!I", data, pos)[0]
            pos += 4
        elif pid == 0x0B:
            props[pid], pos = _parse_varint(data, pos)
        elif pid == 0x26:  # user property: two strings
            for _ in range(2):
                n = struct.unpack_from("!H", data, pos)[0]
                pos += 2 + n
        else:  # every other property is a string or binary blob with a 2-byte length
            n = struct.unpack_from("!H", data, pos)[0]
            props[pid] = bytes(data[pos + 2:pos + 2 + n])
            pos += 2 + n
    return props, end


def parse_connack(body):
    """-> (session_present, reason_code, props)."""
    props, _ = _parse_props(body, 2) if len(body) > 2 else ({}, 2)
    return bool(body[0] & 1), body[1], props


def parse_publish(first, body):
    """-> (topic, payload, qos, retain, packet_id, props)."""
    qos = (first >> 1) & 3
    n = struct.unpack_from("!H", body, 0)[0]
    topic = bytes(body[2:2 + n]).decode()
    pos = 2 + n
    packet_id = 0
    if qos:
        packet_id = struct.unpack_from("!H", body, pos)[0]
        pos += 2
    props, pos = _parse_props(body, pos)
    return topic, bytes(body[pos:]), qos, bool(first & 1), packet_id, props


def parse_ack(body):
    """PUBACK/SUBACK-style: -> (packet_id, reason code). MQTT 5 omits the reason when it is 0."""
    packet_id = struct.unpack_from("!H", body, 0)[0]
    return packet_id, body[2] if len(body) > 2 else 0


def parse_suback(body):
    packet_id = struct.unpack_from("!H", body, 0)[0]
    _, pos = _parse_props(body, 2)
    return packet_id, bytes(body[pos:])
