"""The client is a distribution of its own: its wheel installs alone, without the server.

Builds `realtimechat-client` with uv, installs the wheel into a fresh virtual environment
(from uv's cache when it can) and imports it there: a bot's environment gets httpx and
websockets, and none of the server's FastAPI, SQLAlchemy, boto3, psycopg or OpenTelemetry.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("fastapi", "sqlalchemy", "boto3", "psycopg", "opentelemetry", "orjson", "redis")

CHECK = f"""
import importlib.metadata, importlib.util, json
import realtimechat_client
from realtimechat_client import ChatClient, LiveSession, ChatAPIError, Backoff
from realtimechat_client import protocol
print(json.dumps({{
    "file": realtimechat_client.__file__,
    "version": importlib.metadata.version("realtimechat-client"),
    "present": [m for m in {SERVER_ONLY!r} if importlib.util.find_spec(m) is not None],
    "dists": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
}}))
"""


def _uv() -> str | None:
    # `uv run` tells its children where it is; otherwise whatever uv is on the PATH.
    return os.environ.get("UV") or shutil.which("uv")


def _run(*args: str, cwd: Path = ROOT) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT")}
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_client_wheel_installs_alone_without_the_server(tmp_path: Path) -> None:
    uv = _uv()
    if uv is None:
        pytest.skip("uv is not installed: cannot build the client's wheel")
    dist = tmp_path / "dist"
    _run(uv, "build", "--package", "realtimechat-client", "--wheel", "--out-dir", str(dist))
    (wheel,) = dist.glob("realtimechat_client-*.whl")
    server_version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert wheel.name.startswith(f"realtimechat_client-{server_version}-")  # versioned together

    venv = tmp_path / "venv"
    _run(uv, "venv", "--python", sys.executable, str(venv))
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run(uv, "pip", "install", "--python", str(python), str(wheel))

    seen = json.loads(_run(str(python), "-c", CHECK, cwd=tmp_path))
    assert Path(seen["file"]).is_relative_to(venv)  # the installed copy, not the source tree
    assert seen["version"] == server_version
    assert seen["present"] == []
    assert "realtimechat" not in seen["dists"]
    assert {"httpx", "websockets", "realtimechat-client"} <= set(seen["dists"])
