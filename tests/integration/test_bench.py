"""CI's bench run: short, and checked for loss and duplicates only (never for speed)."""

from __future__ import annotations

import pytest

from realtimechat.bench.runner import BenchConfig, run


@pytest.mark.parametrize(("via", "channels"), [("ws", 1), ("rest", 1), ("ws", 2)])
async def test_bench_smoke_loses_and_duplicates_nothing(via: str, channels: int) -> None:
    config = BenchConfig(
        shape="B", listeners=3, senders=3, messages=150, window=4, channels=channels,
        progress=False,
    )  # fmt: skip
    config.via = "ws" if via == "ws" else "rest"
    report = await run(config)
    assert report["messages"] == 150
    assert report["channels"] == channels
    assert report["via"] == via
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["out_of_order"] == 0
    assert report["send_to_deliver_ms"]["p50"] is not None
    assert report["server"]["rss_after_mib"] > 0


async def test_bench_idle_connections_smoke() -> None:
    report = await run(BenchConfig(shape="conns", connections=50, progress=False))
    assert report["connections"] == 50
    assert report["failed"] == 0
    assert report["server"]["rss_per_connection_kib"] is not None
