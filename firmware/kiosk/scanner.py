"""QR/barcode scanner framing: bytes from the UART -> complete codes.

Foundation version: CR, LF or CRLF terminated lines, a length cap, non-UTF-8 lines dropped and
counted. The firmware runtime issue adds resync rules, repeat suppression and more code kinds.
"""

from kiosk import protocol

MAX_LINE = 1024


class Scanner:
    def __init__(self, max_line=MAX_LINE):
        self._buf = bytearray()
        self._max = max_line
        self._skipping = False  # inside an overlong line: wait for its terminator
        self.dropped = 0

    def feed(self, data):
        """Bytes in -> list of decoded code strings completed by this chunk."""
        codes = []
        for byte in data:
            if byte in (10, 13):
                self._skipping = False
                if self._buf:
                    try:
                        codes.append(bytes(self._buf).decode())
                    except UnicodeError:
                        self.dropped += 1
                    self._buf = bytearray()
            elif self._skipping:
                continue
            elif len(self._buf) < self._max:
                self._buf.append(byte)
            else:
                self.dropped += 1  # overlong line: drop it whole, resync at the next terminator
                self._buf = bytearray()
                self._skipping = True
        return codes


def code_kind(text):
    """'health' / 'vehicle' for signed passes of that kind, 'id' for ID card numbers, else 'unknown'."""
    if protocol.is_signed_pass(text):
        try:
            return protocol.decode_pass(text)[0]["k"]
        except protocol.ProtocolError:
            return "unknown"
    if len(text) == 18 and text[:17].isdigit() and (text[17].isdigit() or text[17] in "Xx"):
        return "id"
    return "unknown"
