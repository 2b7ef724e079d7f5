"""Pure helpers of the benchmark: percentiles and the delivery ledger."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentiles(samples: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds of samples in seconds (nearest rank)."""
    if not samples:
        return {"p50": None, "p95": None, "p99": None, "max": None}
    ordered = sorted(samples)

    def rank(p: float) -> float:
        index = max(0, math.ceil(p * len(ordered)) - 1)
        return round(ordered[index] * 1000, 3)

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": rank(1.0)}


@dataclass
class Ledger:
    """What one listener received: checked by seq and by client_msg_id."""

    seqs: Counter[int] = field(default_factory=Counter)
    client_ids: Counter[str] = field(default_factory=Counter)
    last_seq: int = 0
    out_of_order: int = 0

    def record(self, seq: int, client_msg_id: str | None) -> None:
        if seq <= self.last_seq:
            self.out_of_order += 1
        self.last_seq = max(self.last_seq, seq)
        self.seqs[seq] += 1
        if client_msg_id is not None:
            self.client_ids[client_msg_id] += 1

    def lost(self, expected: set[str]) -> int:
        return len(expected - set(self.client_ids))

    def duplicated(self) -> int:
        by_seq = sum(n - 1 for n in self.seqs.values() if n > 1)
        by_id = sum(n - 1 for n in self.client_ids.values() if n > 1)
        return max(by_seq, by_id)
