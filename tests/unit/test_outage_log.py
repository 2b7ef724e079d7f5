"""OutageLog: one warning when a loop starts failing, one line when it works again."""

from __future__ import annotations

import logging

import pytest

from realtimechat.observability.outage import OutageLog


def test_an_outage_is_logged_at_its_start_and_its_end_only(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = logging.getLogger("test.outage")
    outage = OutageLog(log, "outbox relay")
    with caplog.at_level(logging.INFO, logger="test.outage"):
        outage.ok()  # working from the start: nothing to say
        for i in range(3):
            outage.failed(ConnectionError(f"down {i}"))
        outage.ok()
        outage.ok()
        outage.failed(TimeoutError("again"))
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "outbox relay failed, retrying: ConnectionError('down 0')"),
        ("INFO", "outbox relay works again"),
        ("WARNING", "outbox relay failed, retrying: TimeoutError('again')"),
    ]
    assert outage.failing
