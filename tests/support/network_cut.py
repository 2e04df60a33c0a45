"""A Wi-Fi drop for one browser page, on loopback: everything the page sends to the server and
receives from it can be stopped for a while, then let through again.

No netem in this kernel, so the cut is made of two relays the page is put behind:
- TCP (page loads, REST calls, the signaling WebSocket): the page is opened on a proxy's port.
  While cut, the proxy forwards nothing either way and new connections wait, as a TCP connection
  does over a dead link (its data is retransmitted once the link is back).
- UDP (the media): ImpairedRelay's candidate rewriting puts every ICE candidate of the page and
  of the server behind a relay port; while cut, every datagram is dropped.
So both the signaling socket and the media die as on a real drop, while the server and the other
participants keep running normally.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any
from urllib.parse import urlsplit

from tests.support.impaired_network import ImpairedRelay, impair_page


class CuttableRelay(ImpairedRelay):
    """The media relay of ImpairedRelay with a clean link (no loss, no rate cap), dropping every
    datagram while `cut` is set."""

    def __init__(self) -> None:
        super().__init__(loss=0.0, rate_kbit=1_000_000, queue_packets=100_000)
        self.cut = False
        self.dropped_while_cut = 0

    def _enqueue(self, sock: socket.socket, data: bytes, dest: tuple[str, int], link: Any) -> None:
        if self.cut:
            self.dropped_while_cut += 1
            return
        super()._enqueue(sock, data, dest, link)


class StallingProxy:
    """A TCP proxy to the server on a loopback port of its own, which can stop forwarding."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accepted, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def cut(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._flowing.wait()  # a connection opened during the cut waits for the link
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(
                self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
            )
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()  # read just before the cut: held back with the rest
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


class NetworkCut:
    """One page's way to the server, which `cut()` and `restore()` turn off and on. Open the
    page at `url` (instead of the server's) after `attach(page)`."""

    def __init__(self, server_url: str) -> None:
        address = urlsplit(server_url)
        assert address.hostname is not None and address.port is not None
        self.proxy = StallingProxy((address.hostname, address.port))
        self.relay = CuttableRelay()

    async def __aenter__(self) -> NetworkCut:
        await self.proxy.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.proxy.close()
        self.relay.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.proxy.port}"

    async def attach(self, page: Any) -> None:
        """Route the page's signaling through the relay's candidate rewriting."""
        await impair_page(page, self.relay)

    def cut(self) -> None:
        self.relay.cut = True
        self.proxy.cut()

    def restore(self) -> None:
        self.proxy.restore()
        self.relay.cut = False
