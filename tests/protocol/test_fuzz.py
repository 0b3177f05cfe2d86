"""Whatever arrives on the broker, parse_message raises ProtocolError or returns a body: never a crash."""
import json

from hypothesis import HealthCheck, example, given, settings, strategies as st

from kiosk import protocol
from tests.protocol.conftest import TABLE, fixture

KIOSK_TOPICS = [protocol.topic("cp-01", "kiosk-01", c) for c in protocol.KIOSK_CHANNELS]
GATEWAY_TOPICS = [protocol.gateway_topic("cp-01", c) for c in protocol.GATEWAY_CHANNELS]
TOPICS = KIOSK_TOPICS + GATEWAY_TOPICS

SEGMENTS = st.sampled_from(["screening", "v1", "v2", "cp-01", "kiosk-01", "_gateway", "_x", "", "+", "#",
                            "event", "status", "summary", "alert", "k" * 33]) | st.text(max_size=12)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=10,
)


def judge(topic, payload):
    try:
        result = protocol.parse_message(topic, payload)
    except protocol.ProtocolError as err:
        assert err.reason and isinstance(err.reason, str)
        return None
    assert isinstance(result[3], dict)
    return result


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(st.sampled_from(TOPICS), st.binary(max_size=400))
@example("screening/v1/cp-01/kiosk-01/event", b"[" * 16000)
@example("screening/v1/cp-01/kiosk-01/config", b'{"v":1,"settings":' + b"[" * 8000 + b"]" * 8000 + b"}")
@example("screening/v1/cp-01/_gateway/summary", b"")
def test_arbitrary_bytes(topic, payload):
    judge(topic, payload)


@FAST
@given(st.text(max_size=80) | st.lists(SEGMENTS, max_size=7).map("/".join), st.binary(max_size=40))
def test_arbitrary_topics(topic, payload):
    judge(topic, payload)


@FAST
@given(st.sampled_from(TOPICS), st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=8))
def test_arbitrary_json_objects(topic, obj):
    judge(topic, json.dumps(obj).encode())


FIXTURES = [(n, n.split(".")[0]) for n in TABLE["valid"]]


@st.composite
def mutated_fixture(draw):
    """A valid fixture with fields (top level or one level down) replaced, removed or added."""
    name, channel = draw(st.sampled_from(FIXTURES))
    body = fixture(name)
    for _ in range(draw(st.integers(1, 2))):
        target = body
        nested = [k for k, v in body.items() if isinstance(v, dict) and v]
        if nested and draw(st.booleans()):
            target = body[draw(st.sampled_from(sorted(nested)))]
        # half the time a field with special handling (or a new one), half the time any present field
        key = draw(st.sampled_from(["code", "roi", "type", "state", "v", "x_new"]) | st.sampled_from(sorted(target)))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(JSON_VALUES)
    topic = protocol.gateway_topic("cp-01", channel) if channel in protocol.GATEWAY_CHANNELS \
        else protocol.topic("cp-01", "kiosk-01", channel)
    return topic, body


EVENT_TOPIC = protocol.topic("cp-01", "kiosk-01", "event")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_fixture())
@example((EVENT_TOPIC, dict(fixture("event.fault"), code=5)))  # code/roi are unknown fields on these types
@example((EVENT_TOPIC, dict(fixture("event.boot"), roi=0)))
@example((EVENT_TOPIC, dict(fixture("event.scan"), roi=[])))
def test_mutated_fixtures(case):
    topic, body = case
    result = judge(topic, json.dumps(body).encode())
    if result is not None:
        assert result[3] == body  # accepted bodies come back whole


@FAST
@given(st.text(max_size=300))
@example("SP1." + "A" * 5 + "." + "A" * 86)
def test_arbitrary_pass_text(text):
    for candidate in (text, "SP1." + text):
        try:
            protocol.decode_pass(candidate)
        except protocol.ProtocolError as err:
            assert err.reason == "bad_pass"
