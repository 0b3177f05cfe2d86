"""An in-process UART with MicroPython's machine.UART read API; the simulator types into it."""
from __future__ import annotations


class SimUART:
    def __init__(self, baud: int = 9600) -> None:
        self.baud = baud
        self._rx = bytearray()
        self.tx = bytearray()

    def inject(self, data: bytes) -> None:
        """Bytes arriving from the device on the other end (the scanner)."""
        self._rx += data

    def any(self) -> int:
        return len(self._rx)

    def read(self, n: int | None = None) -> bytes | None:
        if not self._rx:
            return None  # MicroPython returns None on timeout with nothing read
        n = len(self._rx) if n is None else n
        data = bytes(self._rx[:n])
        del self._rx[:n]
        return data

    def write(self, data: bytes) -> int:
        self.tx += data
        return len(data)
