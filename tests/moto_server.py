"""A throwaway moto S3 server on a free port, as a separate process that tests can kill."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pytest
from pydantic import SecretStr

from realtimechat.settings import FileSettings
from tests.support import free_port

BUCKET = "rtc-test"


@dataclass
class MotoServer:
    """One `python -m moto.server` process; `endpoint_url` is where S3 clients point."""

    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    output: list[str] = field(default_factory=list, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self, **overrides: Any) -> FileSettings:
        """FileSettings for an S3Store on this server (dummy credentials; moto takes any)."""
        values: dict[str, Any] = {
            "backend": "s3",
            "s3_endpoint_url": self.endpoint_url,
            "s3_bucket": BUCKET,
            "s3_region": "us-east-1",
            "s3_access_key_id": "testing",
            "s3_secret_access_key": SecretStr("testing"),
            "timeout_s": 5.0,
        }
        return FileSettings(**{**values, **overrides})

    def start(self) -> None:
        """Start moto and return once it has bound its port (werkzeug says so on stderr)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert self.process.stderr is not None
        stderr = self.process.stderr
        # werkzeug prints this after listen(), so connections are accepted from here on.
        ready = f"Running on {self.endpoint_url}"
        for raw in iter(stderr.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            self.output.append(line)
            if ready in line:
                # moto logs every request to stderr: keep draining so it never blocks on it.
                threading.Thread(target=self._drain, args=(stderr,), daemon=True).start()
                return
        stderr.close()
        raise RuntimeError("moto server exited:\n" + "\n".join(self.output))

    def _drain(self, stderr: IO[bytes]) -> None:
        with stderr:
            for raw in iter(stderr.readline, b""):
                self.output.append(raw.decode(errors="replace").rstrip())

    def kill(self) -> None:
        """SIGKILL: S3 gone, as an outage or a partition looks to its clients."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


def _require_moto() -> None:
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        pytest.skip("moto[server] is not installed (it is a locked dev dependency: uv sync)")


@contextlib.contextmanager
def s3_server_sync() -> Iterator[MotoServer]:
    """The same, for synchronous fixtures (a module-scoped one, say)."""
    _require_moto()
    server = MotoServer(free_port())
    try:
        server.start()
        yield server
    finally:
        server.kill()


@contextlib.asynccontextmanager
async def s3_server() -> AsyncIterator[MotoServer]:
    """Start a fresh moto S3 server; skip (a failure under CI) when moto is not installed."""
    _require_moto()
    server = MotoServer(free_port())
    try:
        await asyncio.wait_for(asyncio.to_thread(server.start), 60)
        yield server
    finally:
        # Killing also ends a start() still waiting, as its pipe reaches end of file.
        await asyncio.to_thread(server.kill)
