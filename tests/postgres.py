"""A throwaway PostgreSQL server: initdb + pg_ctl as the postgres user, on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import free_port

PG_USER = "postgres"


def _as_postgres(*cmd: str) -> list[str]:
    # initdb and postgres refuse to run as root (CI and sessions are root).
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_USER, "--", *cmd]
    return list(cmd)


@dataclass
class PostgresServer:
    """One PostgreSQL cluster in a temp dir; `url` is its SQLAlchemy URL."""

    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        subprocess.run(_as_postgres(*cmd), check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60",
            "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")


@contextlib.asynccontextmanager
async def postgres_server() -> AsyncIterator[PostgresServer]:
    """Start a fresh cluster; skip (a failure under CI) when the binaries are missing."""
    if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    root = Path(tempfile.mkdtemp(prefix="rtc-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, PG_USER, PG_USER)
    server = PostgresServer(root, free_port())
    await asyncio.to_thread(
        server._run, "initdb", "-D", str(server.data), "-U", PG_USER, "-A", "trust", "-E", "UTF8"
    )
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(server.stop, "immediate")
        shutil.rmtree(root, ignore_errors=True)
