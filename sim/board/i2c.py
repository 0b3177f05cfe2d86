"""A simulated I2C bus with MicroPython's `machine.I2C` API, and the emulator base class.

Shape taken from Zephyr's I2C emulators: the bus turns every API call into one wire
transaction (bytes written, then bytes read after a repeated start) and hands it to the
device emulator at that address. An emulator is a register map with read/write hooks that
have side effects, a backend in real units, and a fault hook that can fail chosen
transactions. An absent or unplugged address fails like MicroPython: OSError(ENODEV).
"""
from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterable, Optional


@dataclass(frozen=True)
class Transaction:
    """One I2C transaction as seen on the wire."""

    address: int
    write: bytes      # bytes sent after the address (register address first, if any)
    read_len: int     # bytes read after a repeated start (0 = pure write)
    freq: int         # bus clock (Hz) at the time
    index: int        # running number of this transaction on the bus


FaultHook = Callable[[Transaction], None]
"""Called before a device sees a transaction; raise OSError to fail it, return to proceed."""


def nack(when: Callable[[Transaction], bool] = lambda t: True, times: Optional[int] = None,
         code: int = errno.EIO) -> FaultHook:
    """A fault hook that NACKs (OSError(code)) matching transactions, at most `times` of them."""
    left = [times]

    def hook(t: Transaction) -> None:
        if when(t) and (left[0] is None or left[0] > 0):
            if left[0] is not None:
                left[0] -= 1
            raise OSError(code, "I2C NACK (simulated fault)")

    return hook


def register_of(t: Transaction, addrsize: int = 16) -> Optional[int]:
    """The register address a transaction starts with, or None if too short."""
    n = addrsize // 8
    return int.from_bytes(t.write[:n], "big") if len(t.write) >= n else None


class I2CEmulator:
    """Base for device emulators: fault hook, unplugging, and the transfer entry point."""

    def __init__(self, address: int) -> None:
        self.address = address
        self.fault_hook: Optional[FaultHook] = None
        self.unplugged = False

    def transfer(self, t: Transaction) -> bytes:
        """Serve one transaction; return exactly t.read_len bytes. Raise OSError to NACK."""
        if self.unplugged:
            raise OSError(errno.ENODEV, "ENODEV")
        if self.fault_hook is not None:
            self.fault_hook(t)
        return self.handle(t)

    def handle(self, t: Transaction) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError


class I2C:
    """Drop-in for MicroPython's machine.I2C over emulated devices.

    `freq` may be changed with init(freq=...) the way firmware reconfigures a bus; every
    transaction records the frequency it ran at, and the last `log_size` are kept in `log`.
    """

    def __init__(self, id: int = 0, *, scl: object = None, sda: object = None, freq: int = 400_000,
                 timeout: int = 50_000, log_size: int = 256) -> None:
        self.id = id
        self.scl = scl
        self.sda = sda
        self.freq = freq
        self.timeout = timeout
        self.devices: dict[int, I2CEmulator] = {}
        self.log: deque[Transaction] = deque(maxlen=log_size)
        self.count = 0

    # -- simulator side ---------------------------------------------------------------------
    def attach(self, device: I2CEmulator) -> I2CEmulator:
        if device.address in self.devices:
            raise ValueError(f"address 0x{device.address:02X} already taken")
        self.devices[device.address] = device
        return device

    def detach(self, address: int) -> None:
        self.devices.pop(address, None)

    def transfer(self, addr: int, write: bytes, read_len: int) -> bytes:
        """One raw transaction (write, repeated start, read): for adapters and bridges."""
        return self._transfer(addr, write, read_len)

    def _transfer(self, addr: int, write: bytes, read_len: int) -> bytes:
        t = Transaction(addr, bytes(write), read_len, self.freq, self.count)
        self.count += 1
        self.log.append(t)
        dev = self.devices.get(addr)
        if dev is None:
            raise OSError(errno.ENODEV, "ENODEV")
        data = dev.transfer(t)
        if len(data) != read_len:
            raise RuntimeError(f"emulator at 0x{addr:02X} returned {len(data)} bytes for {read_len}")
        return data

    @staticmethod
    def _mem(memaddr: int, addrsize: int) -> bytes:
        if addrsize not in (8, 16):
            raise ValueError("addrsize must be 8 or 16")
        return memaddr.to_bytes(addrsize // 8, "big")

    # -- machine.I2C API --------------------------------------------------------------------
    def init(self, *, freq: Optional[int] = None, scl: object = None, sda: object = None,
             timeout: Optional[int] = None) -> None:
        if freq is not None:
            self.freq = freq
        if timeout is not None:
            self.timeout = timeout

    def deinit(self) -> None:
        pass

    def scan(self) -> list[int]:
        found = []
        for addr in range(0x08, 0x78):
            dev = self.devices.get(addr)
            if dev is not None and not dev.unplugged:
                found.append(addr)
        return found

    def readfrom(self, addr: int, nbytes: int, stop: bool = True) -> bytes:
        return self._transfer(addr, b"", nbytes)

    def readfrom_into(self, addr: int, buf: bytearray | memoryview, stop: bool = True) -> None:
        buf[:] = self._transfer(addr, b"", len(buf))

    def writeto(self, addr: int, buf: bytes | bytearray | memoryview, stop: bool = True) -> int:
        self._transfer(addr, bytes(buf), 0)
        return len(buf)

    def writevto(self, addr: int, vector: Iterable[bytes], stop: bool = True) -> int:
        data = b"".join(bytes(v) for v in vector)
        self._transfer(addr, data, 0)
        return len(data)

    def readfrom_mem(self, addr: int, memaddr: int, nbytes: int, *, addrsize: int = 8) -> bytes:
        return self._transfer(addr, self._mem(memaddr, addrsize), nbytes)

    def readfrom_mem_into(self, addr: int, memaddr: int, buf: bytearray | memoryview, *,
                          addrsize: int = 8) -> None:
        buf[:] = self._transfer(addr, self._mem(memaddr, addrsize), len(buf))

    def writeto_mem(self, addr: int, memaddr: int, buf: bytes | bytearray | memoryview, *,
                    addrsize: int = 8) -> None:
        self._transfer(addr, self._mem(memaddr, addrsize) + bytes(buf), 0)
