"""Store-and-forward queue of events waiting for their PUBACK.

Foundation version: records are held in RAM in seq order and released only after the broker
acknowledged them, so network or broker outages lose nothing. Surviving a power cut needs the
flash-backed segments of the firmware runtime issue; the interface below stays the same.
"""

from kiosk import protocol

DEFAULT_CAPACITY = 2000


class Outbox:
    def __init__(self, capacity=DEFAULT_CAPACITY):
        self._capacity = capacity
        self._records = []  # [(rid, body)], oldest first; rid is the event seq
        self._acked = []  # recently released records, kept only so a fault can replay them
        self.refused = 0  # records we could not keep (full): explains gaps in seq

    def append(self, body):
        if len(self._records) >= self._capacity:
            self.refused += 1
            return False
        self._records.append((body["seq"], body))
        return True

    def peek(self, n):
        return self._records[:n]

    def ack(self, rid):
        for i, record in enumerate(self._records):
            if record[0] == rid:
                self._acked.append(self._records.pop(i))
                del self._acked[:-64]
                return True
        return False

    def depth(self):
        return len(self._records)

    def replay(self, n):
        """Put the last n released records back (as a power cut before the ack was saved would)."""
        back = self._acked[-n:] if n else []
        del self._acked[len(self._acked) - len(back):]
        self._records = back + self._records
        return len(back)

    @staticmethod
    def encode(body):
        return protocol.encode(body)
