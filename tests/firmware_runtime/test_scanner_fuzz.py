"""Scanner framing under random input (CPython, hypothesis): whatever arrives, the state machine
neither crashes nor grows, every code it returns is a clean line, and it resyncs afterwards."""
from hypothesis import given, settings, strategies as st

from kiosk import scanner

CAP = 64


def _reference(data: bytes) -> list[str]:
    """What the framing rules say, written the slow, obvious way."""
    out = []
    for line in data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")[:-1]:
        if not line or len(line) > CAP or any(b < 0x20 or b == 0x7F for b in line):
            continue
        try:
            out.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            continue
    return out


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_random_bytes_any_split(data: bytes, cuts: list[int]) -> None:
    s = scanner.Scanner(max_line=CAP)
    got, i, k = [], 0, 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        got += s.feed(data[i:i + n])
        i, k = i + n, k + 1
    # CRLF split across reads ends one line either way; the reference folds it the same.
    assert got == _reference(data)
    assert len(s._buf) == CAP
    assert s.feed(b"\r\nRESYNC-OK\r\n")[-1:] == ["RESYNC-OK"]  # an unfinished tail ends at the CR


lines = st.lists(st.text(st.characters(min_codepoint=0x20, blacklist_categories=("Cs",)), min_size=1, max_size=20)
                 .filter(lambda t: "\x7f" not in t and len(t.encode()) <= CAP), max_size=10)


@settings(max_examples=200, deadline=None)
@given(lines, st.sampled_from([b"\r", b"\n", b"\r\n"]), st.binary(max_size=100))
def test_codes_survive_garbage_between(codes: list[str], term: bytes, junk: bytes) -> None:
    s = scanner.Scanner(max_line=CAP)
    s.feed(junk)
    s.feed(b"\r\n")  # whatever the junk was, a terminator resyncs
    data = b"".join(c.encode() + term for c in codes)
    assert s.feed(data) == codes


def test_64k_without_newline_in_one_read() -> None:
    s = scanner.Scanner()
    assert s.feed(bytes([0x41]) * 65536) == []
    assert s.counts["overlong"] == 1 and len(s._buf) == scanner.MAX_LINE
    assert s.feed(b"\nAFTER\r\n") == ["AFTER"]
