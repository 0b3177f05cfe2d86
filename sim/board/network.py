"""The board's network: asyncio TCP streams to the broker, with a switch that kills Wi-Fi.

`cut()` models the radio dying: open connections go silent in both directions without a FIN
(so the broker only notices through the MQTT keepalive and then publishes the LWT), and new
connections fail until `restore()`.
"""
from __future__ import annotations

import asyncio
import socket
from typing import Any


class NetworkDown(OSError):
    pass


class _SilentReader:
    def __init__(self, reader: asyncio.StreamReader, net: "SimNetwork") -> None:
        self._reader = reader
        self._net = net

    async def readexactly(self, n: int) -> bytes:
        if self._net.up:
            read = asyncio.ensure_future(self._reader.readexactly(n))
            cut = asyncio.ensure_future(self._net._cut_event.wait())
            try:
                await asyncio.wait({read, cut}, return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    return read.result()
            finally:
                for fut in (read, cut):
                    fut.cancel()
                    if fut.done() and not fut.cancelled():
                        fut.exception()  # retrieved: a dead link's EOF is expected here
        await asyncio.Event().wait()  # a dead radio: nothing ever arrives
        raise AssertionError("unreachable")


class _SilentWriter:
    def __init__(self, writer: asyncio.StreamWriter, net: "SimNetwork") -> None:
        self._writer = writer
        self._net = net
        self._cut_at_open = net.cuts

    def _dead(self) -> bool:
        return not self._net.up or self._net.cuts != self._cut_at_open

    def write(self, data: bytes) -> None:
        if not self._dead():
            self._writer.write(data)

    async def drain(self) -> None:
        if not self._dead():
            await self._writer.drain()

    def close(self) -> None:
        if self._dead():
            # The radio is gone: abort without a FIN, as a vanished kiosk would. The broker keeps
            # the half-open session until the keepalive runs out.
            self._net.orphans.append(self._writer)
            return
        self._writer.close()


class SimNetwork:
    def __init__(self) -> None:
        self.up = True
        self.cuts = 0
        self.orphans: list[Any] = []
        self._cut_event = asyncio.Event()

    def cut(self) -> None:
        self.up = False
        self.cuts += 1
        self._cut_event.set()

    def restore(self) -> None:
        self.up = True
        self._cut_event = asyncio.Event()
        for writer in self.orphans:  # the OS eventually times these out; tidy them now
            writer.transport.abort()
        self.orphans.clear()

    async def open_connection(self, host: str, port: int) -> tuple[_SilentReader, _SilentWriter]:
        if not self.up:
            await asyncio.sleep(0.2)  # a dead radio fails slowly, not instantly
            raise NetworkDown(113, "no route to host (Wi-Fi down)")
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:  # small MQTT packets must not wait for Nagle's algorithm (verdict latency)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _SilentReader(reader, self), _SilentWriter(writer, self)
