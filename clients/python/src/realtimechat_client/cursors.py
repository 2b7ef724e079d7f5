"""Where a client keeps, per channel, the last event seq its application has been given.

A `LiveSession` loads the cursors when it starts, resumes each channel from them, and
saves a channel's cursor each time it hands one of that channel's events to the
application. A restarted application that uses the same store resumes where it stopped.

`MemoryCursorStore` (the default) lives as long as the process. `FileCursorStore` keeps the
cursors in a JSON file, written atomically (temp file + `os.replace`), batched so that a
busy channel does not rewrite the file on every event, and flushed on `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Cursor", "CursorStore", "FileCursorStore", "MemoryCursorStore"]


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last seq of a channel the application has seen, and the epoch that seq belongs to."""

    seq: int
    epoch: str | None = None


@runtime_checkable
class CursorStore(Protocol):
    """Per-channel cursors that outlive a connection (and, for a durable store, the process)."""

    def load(self) -> dict[str, Cursor]:
        """Every stored cursor by channel id."""
        ...

    def save(self, channel_id: str, seq: int, epoch: str | None) -> None:
        """Record that the application has had `channel_id` up to `seq` (of `epoch`).

        Called on the event loop for every event handed out: it must not block for long.
        """
        ...

    def flush(self) -> None:
        """Make everything saved so far durable (no-op for a store that always is)."""
        ...

    def close(self) -> None:
        """Flush and release resources; the session calls it when it ends."""
        ...


class MemoryCursorStore:
    """Cursors in a dict: survives reconnects and new sessions of the same process."""

    def __init__(self, initial: dict[str, Cursor] | None = None) -> None:
        self._cursors: dict[str, Cursor] = dict(initial or {})

    def load(self) -> dict[str, Cursor]:
        return dict(self._cursors)

    def save(self, channel_id: str, seq: int, epoch: str | None) -> None:
        self._cursors[channel_id] = Cursor(seq, epoch)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class FileCursorStore:
    """Cursors in a JSON file, `{"<channel_id>": {"seq": n, "epoch": "…"}, …}`.

    `save()` only updates memory; the file is rewritten at most every `flush_interval_s`
    (a timer on the running event loop makes sure a last save is not left unwritten) or
    at once when `flush()` / `close()` is called. Each write goes to a temp file in the
    same directory, is fsynced, and replaces the old file with `os.replace`, so a crash
    leaves either the old or the new cursors, never a torn file. A missing file is an
    empty store; an unreadable one raises on `load()`.
    """

    def __init__(self, path: str | os.PathLike[str], *, flush_interval_s: float = 0.5) -> None:
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self._cursors: dict[str, Cursor] = {}
        self._loaded = False
        self._dirty = False
        self._last_write = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()
        self.writes = 0  # files written so far (observable batching)

    def load(self) -> dict[str, Cursor]:
        with self._lock:
            if not self._loaded:
                self._cursors = self._read()
                self._loaded = True
            return dict(self._cursors)

    def save(self, channel_id: str, seq: int, epoch: str | None) -> None:
        with self._lock:
            if not self._loaded:
                self._cursors = {**self._read(), **self._cursors}
                self._loaded = True
            self._cursors[channel_id] = Cursor(seq, epoch)
            self._dirty = True
        if time.monotonic() - self._last_write >= self.flush_interval_s:
            self.flush()
        else:
            self._arm_timer()

    def flush(self) -> None:
        with self._lock:
            self._cancel_timer()
            if not self._dirty:
                return
            snapshot = {
                cid: {"seq": c.seq, "epoch": c.epoch} for cid, c in sorted(self._cursors.items())
            }
            self._dirty = False
            self._last_write = time.monotonic()
            self._write(json.dumps(snapshot, indent=2).encode())
            self.writes += 1

    def close(self) -> None:
        self.flush()

    # -- internals ---------------------------------------------------------------
    def _arm_timer(self) -> None:
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: flush() / close() must be called by the owner
            return
        delay = max(0.0, self.flush_interval_s - (time.monotonic() - self._last_write))
        self._timer = loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _read(self) -> dict[str, Cursor]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        data = json.loads(raw) if raw.strip() else {}
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: cursor file is not a JSON object")
        out: dict[str, Cursor] = {}
        for cid, value in data.items():
            if isinstance(value, int) and not isinstance(value, bool):
                out[str(cid)] = Cursor(value, None)
            elif isinstance(value, dict) and isinstance(value.get("seq"), int):
                epoch = value.get("epoch")
                out[str(cid)] = Cursor(int(value["seq"]), epoch if isinstance(epoch, str) else None)
            else:
                raise ValueError(f"{self.path}: bad cursor for channel {cid!r}: {value!r}")
        return out

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
