"""The signed pass format (health codes, vehicle passes): encoding, decoding, tamper evidence."""
import binascii
import json

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kiosk import protocol
from tests.protocol.conftest import PAYLOADS, micropython_json

B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # fixed test key, not a secret anywhere
PUB = KEY.public_key()
EXAMPLE = json.loads((PAYLOADS / "pass.example.json").read_text())


def make(holder="HZ-TEST-000123", kind="health", color="green", iat=1767225600, exp=1767312000, kid="gz-2026"):
    body = protocol.pass_body(holder, kind, color, iat, exp, kid)
    return body, protocol.encode_pass(body, KEY.sign(protocol.pass_signing_input(body)))


def verifies(text, pub=PUB):
    """What the gateway does: decode the form, then check the signature. False on any failure."""
    try:
        _body, signing_input, signature = protocol.decode_pass(text)
    except protocol.ProtocolError as err:
        assert err.reason == "bad_pass"
        return False
    try:
        pub.verify(signature, signing_input)
    except InvalidSignature:
        return False
    return True


def b64(data):
    return protocol.b64url_encode(data)


def forged(body_obj=None, body_bytes=None, signature=b"\x00" * 64, prefix="SP1."):
    if body_bytes is None:
        body_bytes = json.dumps(body_obj).encode()
    return prefix + b64(body_bytes) + "." + b64(signature)


def test_round_trip_and_verify():
    body, text = make()
    assert text.startswith("SP1.") and text.count(".") == 2
    assert protocol.is_signed_pass(text)
    got, signing_input, signature = protocol.decode_pass(text)
    assert got == body
    assert signing_input == protocol.pass_signing_input(body) == text.rsplit(".", 1)[0].encode()
    assert len(signature) == 64
    PUB.verify(signature, signing_input)
    assert verifies(text)


def test_body_is_canonical_json_and_the_qr_text_is_qr_friendly():
    body, text = make()
    raw = protocol.b64url_decode(text.split(".")[1])
    assert raw.decode() == protocol.canonical(body)
    assert set(text) <= set(B64URL + ".SP1")  # no '+', '/', '=': no escaping in URLs or QR
    assert len(text) < 300


def test_vehicle_pass_and_other_colours():
    for kind in protocol.PASS_KINDS:
        for color in protocol.COLORS:
            body, text = make(kind=kind, color=color)
            assert protocol.decode_pass(text)[0] == body and verifies(text)


def test_another_key_does_not_verify():
    _body, text = make()
    assert not verifies(text, Ed25519PrivateKey.generate().public_key())


def test_every_single_character_change_is_caught():
    _body, text = make()
    for i, c in enumerate(text):
        for r in {B64URL[(B64URL.find(c) + 1) % 64], "A", "_", "."} - {c}:
            tampered = text[:i] + r + text[i + 1:]
            assert not verifies(tampered), (i, c, r)


def test_unused_bits_of_the_last_character_are_not_a_second_encoding():
    # 64 bytes = 86 base64url characters; the last one carries 2 data bits and 4 unused ones.
    _body, text = make()
    head, sig = text.rsplit(".", 1)
    last = B64URL.find(sig[-1])
    for other in range(64):
        if other != last and other >> 4 == last >> 4:  # same data bits, other unused bits
            variant = head + "." + sig[:-1] + B64URL[other]
            with pytest.raises(protocol.ProtocolError) as caught:
                protocol.decode_pass(variant)
            assert caught.value.reason == "bad_pass"


def test_dropped_or_added_characters_are_caught():
    _body, text = make()
    for i in range(len(text)):
        assert not verifies(text[:i] + text[i + 1:])
    assert not verifies(text + "A")
    assert not verifies(text + "=")
    assert not verifies(" " + text)


GOOD = {"h": "HZ-1", "k": "health", "c": "green", "iat": 100, "exp": 200, "kid": "k1"}


@pytest.mark.parametrize("text", [
    "", "SP1", "SP1.", "SP2." + forged(GOOD)[4:], "sp1." + forged(GOOD)[4:], "XSP1." + forged(GOOD)[4:],
    "https://example.org/?SP1.abc.def",
    "SP1." + b64(b"{}"),  # 2 parts
    forged(GOOD) + ".AAAA",  # 4 parts
    forged(GOOD).replace(".", "..", 1),
    "SP1.eyJ+.AAAA", "SP1.eyJ/.AAAA", "SP1.eyJ=.AAAA", "SP1.eyJ!.AAAA", "SP1.ey J.AAAA", "SP1.\u00e9.AAAA",
    "SP1.A." + b64(b"\x00" * 64),  # 1 base64 character cannot be a byte
    forged(body_bytes=b"hello"),
    forged(body_bytes=b""),
    forged(body_bytes=b"\xff\xfe{}"),
    forged(body_bytes=b"[1, 2]"),
    forged(body_bytes=b'"HZ-1"'),
    forged(body_bytes=b'{"h": "HZ-1", "k": "health", "c": "green", "iat": NaN, "exp": 200, "kid": "k1"}'),
    forged(GOOD, signature=b"\x00" * 63),
    forged(GOOD, signature=b"\x00" * 65),
    forged(GOOD, signature=b""),
] + [forged({k: v for k, v in GOOD.items() if k != missing}) for missing in GOOD] + [
    forged(dict(GOOD, **change)) for change in [
        {"exp": 100}, {"exp": 99}, {"h": ""}, {"h": "x" * 65}, {"h": 5}, {"h": None},
        {"k": "id"}, {"k": "unknown"}, {"c": "none"}, {"c": "blue"}, {"iat": -1}, {"iat": 1.5},
        {"iat": True}, {"exp": "200"}, {"kid": "_k"}, {"kid": "k k"}, {"kid": ""}, {"kid": "k" * 33},
    ]
])
def test_malformed_passes_are_bad_pass(text):
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.decode_pass(text)
    assert caught.value.reason == "bad_pass"


def test_limits_that_are_fine():
    for change in [{"h": "x" * 64}, {"h": "\u5f20\u4e09"}, {"iat": 0, "exp": 1}, {"x_extra": [1]}]:
        body = dict(GOOD, **change)
        assert protocol.decode_pass(forged(body))[0] == body


def test_encode_pass_wants_64_byte_signatures():
    body = protocol.pass_body("HZ-1", "vehicle", "yellow", 1, 2, "k1")
    for sig in (b"", b"\x00" * 63, b"\x00" * 65):
        with pytest.raises(protocol.ProtocolError) as caught:
            protocol.encode_pass(body, sig)
        assert caught.value.reason == "bad_pass"


@pytest.mark.parametrize("args, reason", [
    (("", "health", "green", 1, 2, "k"), "bad_pass"),
    (("x" * 65, "health", "green", 1, 2, "k"), "bad_pass"),
    (("h", "health", "green", 2, 2, "k"), "bad_pass"),
    (("h", "id", "green", 1, 2, "k"), "bad_value"),
    (("h", "health", "none", 1, 2, "k"), "bad_value"),
    (("h", "health", "green", 1.0, 2, "k"), "bad_type"),
    (("h", "health", "green", 1, 2, "_k"), "reserved_id"),
])
def test_pass_body_checks(args, reason):
    # The issuer-side builder keeps the specific reason; decode_pass turns every failure into bad_pass.
    with pytest.raises(protocol.ProtocolError) as caught:
        protocol.pass_body(*args)
    assert caught.value.reason == reason


def test_is_signed_pass():
    assert protocol.is_signed_pass("SP1.x")
    assert not protocol.is_signed_pass("https://code.example/abc")
    assert not protocol.is_signed_pass("sp1.x")


def test_b64url_round_trip():
    for n in range(70):
        data = bytes((i * 37 + n) % 256 for i in range(n))
        text = protocol.b64url_encode(data)
        assert "=" not in text and "\n" not in text
        assert protocol.b64url_decode(text) == data


def test_the_published_example_is_real():
    pub = Ed25519PublicKey.from_public_bytes(binascii.unhexlify(EXAMPLE["public_key_hex"]))
    body, signing_input, signature = protocol.decode_pass(EXAMPLE["qr"])
    assert body == EXAMPLE["body"]
    assert signing_input.decode() == EXAMPLE["signing_input"]
    pub.verify(signature, signing_input)
    assert protocol.encode_pass(body, signature) == EXAMPLE["qr"]


def test_micropython_reads_and_writes_the_same_passes():
    passes = [make()[1], make(holder="\u5f20\u4e09-0001", kind="vehicle", color="red")[1], EXAMPLE["qr"]]
    bad = [forged(GOOD, signature=b"\x00" * 63), passes[0][:-1] + "B", "SP1.eyJ+.AAAA", forged(body_bytes=b"[1]"),
           forged(dict(GOOD, exp=100))]
    script = (
        "import json, binascii\n"
        "from kiosk import protocol\n"
        "for text in %r:\n"
        "    body, signing_input, signature = protocol.decode_pass(text)\n"
        "    again = protocol.encode_pass(body, signature)\n"
        "    print(json.dumps([protocol.canonical(body), signing_input.decode(),\n"
        "                      binascii.hexlify(signature).decode(), again]))\n"
        "for text in %r:\n"
        "    try:\n"
        "        protocol.decode_pass(text)\n"
        "        print(json.dumps('accepted'))\n"
        "    except protocol.ProtocolError as e:\n"
        "        print(json.dumps(e.reason))\n" % (passes, bad)
    )
    rows = micropython_json(script)
    for text, (canon, signing_input, sig_hex, again) in zip(passes, rows[: len(passes)]):
        body, want_input, want_sig = protocol.decode_pass(text)
        assert canon == protocol.canonical(body)
        assert signing_input.encode() == want_input
        assert binascii.unhexlify(sig_hex) == want_sig
        assert again == text  # MicroPython re-encodes the identical QR text
    assert rows[len(passes):] == ["bad_pass"] * len(bad)
