"""firmware/PROTOCOL.md says what the code does: its examples are the fixtures, its tables the contract."""
import binascii
import json
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from kiosk import protocol
from tests.micropython_runner import FIRMWARE
from tests.protocol.conftest import PAYLOADS, TABLE, fixture

DOC = (FIRMWARE / "PROTOCOL.md").read_text()
BLOCKS = re.findall(r"(?:<!-- example: ([\w.]+) -->\n)?```json\n(.*?)```", DOC, re.S)
EXAMPLE_PASS = json.loads((PAYLOADS / "pass.example.json").read_text())


def section(title):
    return DOC.split("\n## " + title + "\n", 1)[1].split("\n## ", 1)[0]


def test_every_json_block_names_its_example():
    assert BLOCKS
    assert all(name for name, _ in BLOCKS), "a ```json block without <!-- example: name --> before it"


@pytest.mark.parametrize("name, text", BLOCKS, ids=[n or "?" for n, _ in BLOCKS])
def test_json_block_is_the_fixture_and_validates(name, text):
    body = json.loads(text)
    assert body == fixture(name)
    channel = name.split(".")[0]
    topic = protocol.gateway_topic("cp-01", channel) if channel in protocol.GATEWAY_CHANNELS \
        else protocol.topic("cp-01", "kiosk-01", channel)
    assert protocol.parse_message(topic, protocol.encode(body))[3] == body


def test_every_fixture_is_shown_once():
    names = [name for name, _ in BLOCKS]
    assert sorted(names) == sorted(TABLE["valid"])


def test_channel_table():
    rows = [line.split("|")[1:-1] for line in section("Channels").splitlines() if line.startswith("| `")]
    seen = set()
    for cells in rows:
        channel = cells[0].strip().strip("`")
        qos, retained, expiry = (c.strip() for c in cells[3:6])
        assert int(qos) == protocol.qos(channel), channel
        assert (retained == "yes") == protocol.retained(channel), channel
        want = protocol.expiry_s(channel)
        assert expiry == ("none" if want is None else "%d s" % want), channel
        assert ("_gateway" in cells[1]) == (channel in protocol.GATEWAY_CHANNELS)
        seen.add(channel)
    assert seen == set(protocol.KIOSK_CHANNELS) | set(protocol.GATEWAY_CHANNELS)


def test_every_reason_in_the_code_is_documented():
    source = (FIRMWARE / "kiosk" / "protocol.py").read_text()
    reasons = set(re.findall(r'ProtocolError\("(\w+)"', source)) - {"bad_schema"}  # bad_schema: a bug in a schema
    table = section("Rejections")
    documented = set(re.findall(r"^\| `(\w+)` \|", table, re.M))
    assert reasons == documented


def test_limits_quoted_match_the_code():
    assert "16384" in DOC and protocol.MAX_PAYLOAD == 16384
    assert "2048 characters" in DOC and protocol.MAX_RAW_CODE == 2048
    assert "16 levels" in DOC and protocol.MAX_DEPTH == 16
    assert "1-64 characters" in DOC and protocol.MAX_HOLDER == 64
    assert "`%s`" % protocol.config_hash(fixture("config")["settings"]) in section("Config hash")


def test_the_example_pass_in_the_doc_verifies():
    text = section("Signed passes")
    shown = re.findall(r"```\n(SP1\.[A-Za-z0-9_.-]+)\n```", text)  # the bare QR text block
    assert shown == [EXAMPLE_PASS["qr"]]
    assert EXAMPLE_PASS["public_key_hex"] in text
    assert EXAMPLE_PASS["signing_input"] in text
    pub = Ed25519PublicKey.from_public_bytes(binascii.unhexlify(EXAMPLE_PASS["public_key_hex"]))
    body, signing_input, signature = protocol.decode_pass(EXAMPLE_PASS["qr"])
    pub.verify(signature, signing_input)
    assert protocol.canonical(body) in text


def test_the_python_snippets_run():
    issue, check = re.findall(r"```python\n(.*?)```", section("Signed passes"), re.S)
    scope = {}
    exec(issue, scope)  # noqa: S102 - our own documentation
    scope["trusted"] = {"gz-health-2026": scope["key"].public_key()}
    scope["now"] = 1767230000
    exec(check, scope)  # noqa: S102
    assert scope["body"]["kid"] == "gz-health-2026"
