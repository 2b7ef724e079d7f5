"""The chaos report: printed at the end of the session (also without `-s`)."""

from __future__ import annotations

import pytest

from tests.chaos.harness import CLIENTS, MESSAGES, RESULTS, table


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section(f"chaos: {CLIENTS} clients, {MESSAGES} messages per scenario")
        terminalreporter.write_line(table(RESULTS))
        terminalreporter.write_line("(also in test-artifacts/chaos.json)")
