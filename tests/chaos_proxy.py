"""A small asyncio TCP proxy for chaos tests: drops connections and delays bytes on purpose.

It listens on 127.0.0.1 (a free port) and forwards every connection to a target. What it
does to the bytes is decided by a seeded `random.Random`, so a failing run can be replayed:

- `drop_probability`: the chance that a new connection gets a byte budget, drawn uniformly
  from 1..`max_life_bytes` (both directions counted); when the budget runs out, possibly in
  the middle of a chunk (and so of a WebSocket frame or an HTTP response), both sides are
  aborted (RST, no close handshake).
- `delay_s`: each chunk waits a random time in [0, delay_s] before it is forwarded (in
  order: one pump per direction).
- `drop_all()`: abort every open connection now.
- `drop_after_next_upstream()`: the next chunk a client sends is forwarded, and then that
  connection is aborted before anything else passes, e.g. right after a send frame or a
  POST, so the server acts on it but its answer never arrives.
- `drop_next_downstream()`: the next chunk the server sends (on any connection) is thrown
  away and its connection aborted: the server has acted on the request, and its answer
  (a `send_ok`, a 201) is lost.
- `accepting = False`: new connections are closed at once (the server looks down).
- `stall_all()`: stop forwarding on the open connections without closing them (a black
  hole, for heartbeat tests); new connections are not stalled.

It is bounded: at most `max_connections` connections are accepted (later ones are closed
at once), and it stops itself after `max_runtime_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import dataclass, field
from types import TracebackType


@dataclass
class ProxyStats:
    connections: int = 0
    refused: int = 0
    dropped_random: int = 0
    dropped_all: int = 0
    dropped_after_upstream: int = 0
    dropped_downstream: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    budget: int | None  # bytes left before a random drop; None: never
    stalled: asyncio.Event = field(default_factory=asyncio.Event)  # set: forwarding paused
    closed: bool = False

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class ChaosProxy:
    """See the module docstring. Use as `async with ChaosProxy(port, ...) as proxy:`."""

    def __init__(
        self,
        target_port: int,
        *,
        target_host: str = "127.0.0.1",
        seed: int = 0,
        drop_probability: float = 0.0,
        max_life_bytes: int = 64 * 1024,
        delay_s: float = 0.0,
        chunk_size: int = 16 * 1024,
        max_connections: int = 5000,
        max_runtime_s: float = 300.0,
    ) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.rng = random.Random(seed)
        self.drop_probability = drop_probability
        self.max_life_bytes = max_life_bytes
        self.delay_s = delay_s
        self.chunk_size = chunk_size
        self.max_connections = max_connections
        self.max_runtime_s = max_runtime_s
        self.stats = ProxyStats()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._drop_after_upstream = False
        self._drop_downstream = False
        self.accepting = True
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ChaosProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_later(self.max_runtime_s, lambda: loop.create_task(self.stop()))

    async def stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for link in list(self._links):
            link.abort()  # the pumps see the aborted sockets and the handlers return
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for task in list(self._tasks):
            task.cancel()

    def configure(
        self, *, drop_probability: float | None = None, delay_s: float | None = None
    ) -> None:
        """Change the chaos for connections from now on (the delay applies at once)."""
        if drop_probability is not None:
            self.drop_probability = drop_probability
        if delay_s is not None:
            self.delay_s = delay_s

    def drop_all(self) -> int:
        """Abort every open connection; how many there were."""
        links = list(self._links)
        for link in links:
            link.abort()
        self.stats.dropped_all += len(links)
        return len(links)

    def drop_after_next_upstream(self) -> None:
        """Forward the next client chunk, then abort its connection."""
        self._drop_after_upstream = True

    def drop_next_downstream(self) -> None:
        """Throw away the next chunk from the server and abort its connection."""
        self._drop_downstream = True

    def stall_all(self) -> int:
        """Stop forwarding on every open connection, without closing it."""
        links = list(self._links)
        for link in links:
            link.stalled.set()
        return len(links)

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # -- internals ---------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        if (
            self.stats.connections >= self.max_connections
            or self._server is None
            or not self.accepting
        ):
            self.stats.refused += 1
            writer.transport.abort()
            return
        self.stats.connections += 1
        self._tasks.add(task)
        # asyncio's server logs a handler task that ends cancelled: end quietly instead.
        with contextlib.suppress(asyncio.CancelledError):
            await self._serve_link(reader, writer)
        self._tasks.discard(task)

    async def _serve_link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self.target_host, self.target_port), 5
            )
        except (OSError, TimeoutError):
            writer.transport.abort()
            return
        budget = None
        if self.drop_probability > 0 and self.rng.random() < self.drop_probability:
            budget = self.rng.randint(1, self.max_life_bytes)
        link = _Link(writer, up_writer, budget)
        self._links.add(link)
        try:
            pumps = [
                asyncio.ensure_future(self._pump(link, reader, up_writer, upstream=True)),
                asyncio.ensure_future(self._pump(link, up_reader, writer, upstream=False)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                for pump in pumps:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump
        finally:
            self._links.discard(link)
            link.abort()

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while not link.closed:
                chunk = await reader.read(self.chunk_size)
                if not chunk:
                    return  # EOF: the caller closes both sides
                if link.stalled.is_set():
                    await asyncio.Event().wait()  # black hole until the link is aborted
                if self.delay_s > 0:
                    await asyncio.sleep(self.rng.uniform(0, self.delay_s))
                if not upstream and self._drop_downstream:
                    self._drop_downstream = False
                    self.stats.dropped_downstream += 1
                    link.abort()
                    return
                drop_after = upstream and self._drop_after_upstream
                if drop_after:
                    self._drop_after_upstream = False
                if link.budget is not None:
                    if len(chunk) >= link.budget:
                        writer.write(chunk[: link.budget])
                        with contextlib.suppress(Exception):
                            await asyncio.wait_for(writer.drain(), 1)
                        self.stats.dropped_random += 1
                        link.abort()
                        return
                    link.budget -= len(chunk)
                writer.write(chunk)
                if upstream:
                    self.stats.bytes_up += len(chunk)
                else:
                    self.stats.bytes_down += len(chunk)
                await writer.drain()
                if drop_after:
                    # The server gets the chunk and then a clean EOF (an RST could discard
                    # it unread); the client is cut off before any answer comes back.
                    self.stats.dropped_after_upstream += 1
                    link.closed = True
                    link.client.transport.abort()
                    with contextlib.suppress(Exception):
                        link.upstream.close()
                    return
