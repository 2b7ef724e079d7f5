"""A small asyncio TCP load balancer: what a client of a cluster sees (one address).

Each frontend is a listening socket on 127.0.0.1 (a free port). Every new connection
is forwarded to one live backend, byte for byte, until either side closes it; then the
other side is closed too (a backend that dies takes its client connections with it, as
a real L4 balancer's health check would soon after). Choosing the backend:

- `prefer=None`: round-robin over the backends (one counter per frontend);
- `prefer=i`: backend i first (client affinity), the others in turn only when it refuses.

A backend that refuses (connection refused, or no answer within `connect_timeout_s`) is
skipped and the next one tried, so a client whose node was killed reconnects to another.
Backends can be changed at any time (`set_backend`), e.g. when a node comes back on
another port. Nothing here is random and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field


@dataclass
class Backend:
    name: str
    port: int
    host: str = "127.0.0.1"
    connections: int = 0  # forwarded connections, in all
    refused: int = 0  # connection attempts that failed
    active: set[asyncio.StreamWriter] = field(default_factory=set, repr=False)


@dataclass
class Frontend:
    prefer: int | None
    server: asyncio.Server
    port: int
    next: int = 0  # round-robin position

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Balancer:
    """See the module docstring. `await Balancer(...).frontend()` gives a client URL."""

    def __init__(self, backends: list[Backend], *, connect_timeout_s: float = 2.0) -> None:
        self.backends = backends
        self.connect_timeout_s = connect_timeout_s
        self.frontends: list[Frontend] = []
        self.failed = 0  # client connections no backend took
        self._tasks: set[asyncio.Task[None]] = set()

    def set_backend(self, name: str, port: int) -> None:
        """Point backend `name` at another port (a node restarted elsewhere)."""
        for backend in self.backends:
            if backend.name == name:
                backend.port = port
                return
        raise KeyError(name)

    async def frontend(self, prefer: int | None = None) -> str:
        """Open a new listening socket with the given policy; its http:// URL."""
        holder: list[Frontend] = []

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._accept(holder[0], reader, writer)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        fe = Frontend(prefer, server, int(server.sockets[0].getsockname()[1]))
        holder.append(fe)
        self.frontends.append(fe)
        return fe.url

    async def aclose(self) -> None:
        for fe in self.frontends:
            fe.server.close()
        for backend in self.backends:
            for writer in list(backend.active):
                writer.transport.abort()  # the pumps end and their handlers return
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for task in list(self._tasks):
            task.cancel()

    def _order(self, fe: Frontend) -> list[Backend]:
        n = len(self.backends)
        if fe.prefer is not None:
            start = fe.prefer % n
        else:
            start = fe.next % n
            fe.next += 1
        return [self.backends[(start + k) % n] for k in range(n)]

    async def _accept(
        self, fe: Frontend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve(fe, reader, writer)
        finally:
            self._tasks.discard(task)

    async def _serve(
        self, fe: Frontend, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        for backend in self._order(fe):
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(backend.host, backend.port), self.connect_timeout_s
                )
            except (OSError, TimeoutError):
                backend.refused += 1
                continue
            backend.connections += 1
            break
        else:
            self.failed += 1
            writer.transport.abort()
            return
        backend.active.add(up_writer)
        pumps = [
            asyncio.ensure_future(_pump(reader, up_writer)),
            asyncio.ensure_future(_pump(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            backend.active.discard(up_writer)
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            # One side is gone (EOF or reset): so is the other. close() sends what was
            # already forwarded, then FIN; a killed node's clients see their
            # connection end at once and reconnect.
            for w in (writer, up_writer):
                with contextlib.suppress(Exception):
                    w.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while True:
            chunk = await reader.read(64 * 1024)
            if not chunk:
                return  # EOF: the caller closes both sides
            writer.write(chunk)
            await writer.drain()
