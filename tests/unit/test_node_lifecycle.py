"""The node starts its parts in one order and stops them in the reverse, gateway drain first."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from realtimechat.bootstrap import Node, build
from realtimechat.settings import AuthSettings, Settings
from realtimechat.storage.migrate import upgrade


def record(calls: list[str], target: object, method: str, label: str) -> None:
    """Note each call of `target.method` (then run it as it was)."""
    original: Callable[..., Any] = getattr(target, method)

    @functools.wraps(original)
    def noted(*args: Any, **kwargs: Any) -> Any:
        calls.append(label)
        return original(*args, **kwargs)

    setattr(target, method, noted)


def recorded_node(tmp_path: Path, calls: list[str]) -> Node:
    settings = Settings(data_dir=tmp_path, auth=AuthSettings(hash_time_cost=1))
    upgrade(settings)
    node = build(settings)
    deps = node.deps
    assert node.worker is not None
    for target, method, label in [
        (deps.db, "start", "db start"),
        (deps.db, "close", "db close"),
        (deps.auth.revocations, "refresh", "revocations refresh"),
        (deps.auth.revocations, "start", "revocations start"),
        (deps.auth.revocations, "stop", "revocations stop"),
        (deps.bus, "subscribe", "bus subscribe"),
        (deps.bus, "start", "bus start"),
        (deps.bus, "close", "bus close"),
        (deps.files, "ready", "files ready"),
        (deps.files.store, "close", "store close"),
        (deps.limiter, "close", "limiter close"),
        (node.hub, "start", "hub start"),
        (node.hub, "stop", "hub stop"),
        (node.worker, "start", "worker start"),
        (node.worker, "stop", "worker stop"),
        (node.gateway, "drain", "gateway drain"),
    ]:
        record(calls, target, method, label)
    return node


async def test_the_node_starts_in_order_and_stops_in_reverse_after_the_drain(
    tmp_path: Path,
) -> None:
    calls: list[str] = []
    node = recorded_node(tmp_path, calls)

    async with node.running():
        assert calls == [
            "db start",
            "revocations refresh",
            "revocations start",
            "bus subscribe",
            "bus start",
            "files ready",
            "hub start",
            "worker start",
        ]
        calls.clear()

    assert calls == [
        "gateway drain",
        "worker stop",
        "hub stop",
        "bus close",
        "revocations stop",
        "limiter close",
        "store close",
        "db close",
    ]


async def test_a_failed_start_stops_what_had_started(tmp_path: Path) -> None:
    calls: list[str] = []
    node = recorded_node(tmp_path, calls)

    async def broken() -> None:
        raise OSError("no bucket")

    node.deps.files.ready = broken  # type: ignore[method-assign]
    with pytest.raises(OSError, match="no bucket"):
        async with node.running():
            pytest.fail("the node ran without its files")

    assert calls[-5:] == [
        "bus close",
        "revocations stop",
        "limiter close",
        "store close",
        "db close",
    ]
    assert "hub start" not in calls
