"""A retry loop's log: the first failure of an outage and its end, not every retry between."""

from __future__ import annotations

import logging


class OutageLog:
    """Logs `what` failing once when it starts failing and once when it works again."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self.failing = False

    def failed(self, exc: BaseException) -> None:
        """One attempt failed; only the first of a run of failures is logged."""
        if not self.failing:
            self._log.warning("%s failed, retrying: %r", self._what, exc)
        self.failing = True

    def ok(self) -> None:
        """One attempt worked; logged only when it ends a run of failures."""
        if self.failing:
            self._log.info("%s works again", self._what)
        self.failing = False
