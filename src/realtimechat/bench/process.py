"""The server under test: started by the bench unless it is given --url."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# The bench measures the server, not its abuse protection.
BENCH_ENV = {
    "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "100000000",
    "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "100000000",
    "RTC_LIMITS__WS_FRAMES_PER_MINUTE": "100000000",
    "RTC_LIMITS__MAX_IN_FLIGHT": "100000",
    "RTC_WS__SEND_QUEUE": "100000",
    "RTC_AUTH__HASH_TIME_COST": "1",
    "RTC_AUTH__HASH_MEMORY_KIB": "8192",
    "RTC_LOG_LEVEL": "warning",
}


def raise_fd_limit() -> int:
    """Raise the open-file limit to the hard limit (children inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class ProcessSample:
    rss_bytes: int
    cpu_s: float


def sample(pid: int) -> ProcessSample | None:
    """RSS and CPU time of a local process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcessSample(rss_kib * 1024, (int(stat[11]) + int(stat[12])) / ticks)


class BenchServer:
    """A `realtimechat serve` child on a fresh data directory and a free port."""

    def __init__(self, extra_env: dict[str, str] | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="rtc-bench-")
        self._env = {**os.environ, **BENCH_ENV, **(extra_env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> str:
        cmd = [sys.executable, "-m", "realtimechat", "serve", "--port", "0",
               "--data-dir", self._tmp.name]  # fmt: skip
        self.proc = await asyncio.to_thread(
            subprocess.Popen, cmd, env=self._env, stdout=subprocess.PIPE
        )
        stdout = self.proc.stdout
        assert stdout is not None

        def wait_for_url() -> str:
            for raw in iter(stdout.readline, b""):
                line = raw.decode(errors="replace").strip()
                if line.startswith("RealTimeChat is running at "):
                    return line.rsplit(" ", 1)[-1]
            raise RuntimeError("the server under test exited before it listened")

        self.url = await asyncio.wait_for(asyncio.to_thread(wait_for_url), 60)
        return self.url

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(self.proc.wait, 30)
            if self.proc.poll() is None:
                self.proc.kill()
        self._tmp.cleanup()
