"""A TCP proxy a test can cut: the database going away as a network fault or a restart does (every
open connection dropped, new ones refused), not as an exception raised inside our own process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class CuttableProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.cut = False
        self._pairs: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.sever()

    def sever(self) -> None:
        """Drop every open connection and refuse new ones until :meth:`mend`."""
        self.cut = True
        for writer in list(self._pairs):
            writer.transport.abort()
        self._pairs.clear()

    def mend(self) -> None:
        self.cut = False

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._pairs |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._pairs.discard(writer)
            writer.transport.abort()


@contextlib.asynccontextmanager
async def cuttable(host: str, port: int) -> AsyncIterator[CuttableProxy]:
    proxy = CuttableProxy(host, port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()
