"""`make run-cluster`: PostgreSQL and Redis in ./data/cluster, two API nodes and a worker.

A local picture of a scaled-out deployment: every process is a real server, and
the nodes share nothing but the database, Redis and the files. Ctrl-C stops them all (the
nodes drain first). Ports: PG_PORT (5433), REDIS_PORT (6380), NODE_PORTS (8001,8002),
and the worker's metrics RTC_WORKER_METRICS_PORT (9464). Files live in one directory
that both nodes and the worker use, as a shared mount or S3 would in production.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(os.environ.get("DATA_DIR", "./data")).resolve() / "cluster"
PG_PORT = int(os.environ.get("PG_PORT", "5433"))
REDIS_PORT = int(os.environ.get("REDIS_PORT", "6380"))
NODE_PORTS = [int(p) for p in os.environ.get("NODE_PORTS", "8001,8002").split(",")]
PG_USER = "postgres"


def need(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        sys.exit(f"run-cluster needs {binary}: install it (Debian: apt-get install {package})")


def as_postgres(*cmd: str) -> list[str]:
    # initdb and postgres refuse to run as root.
    return ["runuser", "-u", PG_USER, "--", *cmd] if os.geteuid() == 0 else list(cmd)


def start_postgres() -> str:
    data = ROOT / "pg"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, PG_USER, PG_USER)
        print(f"creating a PostgreSQL cluster in {data}", flush=True)
        made = subprocess.run(
            as_postgres("initdb", "-D", str(data), "-U", PG_USER, "-A", "trust", "-E", "UTF8"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
        )  # fmt: skip
        if made.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            sys.exit(
                f"initdb failed: {made.stderr.strip()}\n(as root, PostgreSQL runs as the "
                f"'{PG_USER}' user, which must be able to reach {data}: set DATA_DIR to a "
                "directory it can, e.g. DATA_DIR=/tmp/rtc)"
            )
    subprocess.run(
        as_postgres(
            "pg_ctl", "-D", str(data), "-l", str(data / "server.log"), "-w", "-t", "60",
            "-o", f"-p {PG_PORT} -k {data} -c listen_addresses=127.0.0.1", "start",
        ),
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return f"postgresql://{PG_USER}@127.0.0.1:{PG_PORT}/postgres"


def stop_postgres() -> None:
    subprocess.run(
        as_postgres("pg_ctl", "-D", str(ROOT / "pg"), "-m", "fast", "-w", "stop"),
        check=False, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def spawn(name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    log = (ROOT / f"{name}.log").open("ab")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_for_line(name: str, text: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait until the process's log says `text`; exit with its log if it dies first."""
    path = ROOT / f"{name}.log"
    start = path.stat().st_size if path.exists() else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace")[start:]:
            return
        if proc.poll() is not None:
            sys.exit(f"{name} exited; its log ({path}):\n{path.read_text()[start:]}")
        time.sleep(0.1)
    sys.exit(f"{name} did not start within {timeout:.0f} s; see {path}")


def main() -> None:
    need("initdb", "postgresql")
    need("redis-server", "redis-server")
    ROOT.mkdir(parents=True, exist_ok=True)
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    db_url = start_postgres()
    try:
        redis = spawn(
            "redis",
            ["redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
             "--dir", str(ROOT), "--appendonly", "yes"],
        )  # fmt: skip
        procs.append(("redis", redis))
        wait_for_line("redis", "Ready to accept connections", redis)
        env = {
            **os.environ,
            "RTC_DATABASE_URL": db_url,
            "RTC_REDIS_URL": f"redis://127.0.0.1:{REDIS_PORT}/0",
            "RTC_RUN_WORKER": "false",  # the worker process below does it
            # Files on local disk must be one directory for every node and the worker
            # (on several machines: a shared mount, or RTC_FILES__BACKEND=s3).
            "RTC_FILES__LOCAL_DIR": os.environ.get("RTC_FILES__LOCAL_DIR", str(ROOT / "files")),
        }
        rtc = [sys.executable, "-m", "realtimechat"]
        subprocess.run([*rtc, "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
        worker = spawn("worker", [*rtc, "worker", "--data-dir", str(ROOT / "worker")], env)
        procs.append(("worker", worker))
        wait_for_line("worker", "worker is running", worker)
        urls = []
        for i, port in enumerate(NODE_PORTS):
            name = f"node-{chr(ord('a') + i)}"
            node = spawn(
                name,
                [*rtc, "serve", "--port", str(port), "--data-dir", str(ROOT / name)],
                env,
            )
            procs.append((name, node))
            wait_for_line(name, "RealTimeChat is running at", node)
            urls.append(f"  {name}: http://127.0.0.1:{port}")
        print("RealTimeChat cluster is running:", *urls, sep="\n")
        print(f"  PostgreSQL: {db_url}\n  Redis: redis://127.0.0.1:{REDIS_PORT}/0")
        print(f"  worker and logs: {ROOT}/*.log\nCtrl-C stops everything.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while all(p.poll() is None for _, p in procs):
            time.sleep(0.5)
        dead = [name for name, p in procs if p.poll() is not None]
        print(f"stopping: {', '.join(dead)} exited (see its log)", flush=True)
    except KeyboardInterrupt:
        print("\nstopping the cluster", flush=True)
    finally:
        # A second Ctrl-C or SIGTERM (uv forwards the one it gets) must not cut this short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for _, p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # the nodes drain: going_away, then close
        for _, p in reversed(procs):
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
        stop_postgres()


if __name__ == "__main__":
    main()
