"""Feature flags and kill switches, changeable at runtime (a flag never set is on)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from realtimechat.domain.errors import NotFound
from realtimechat.ids import now_ms
from realtimechat.services.uow import UnitOfWork

FLAGS = {
    "push": "push notifications go out (off: jobs wait, none are dropped)",
    "email": "e-mail notifications go out (off: jobs wait, none are dropped)",
    "uploads": "file uploads are accepted",
}


@dataclass(frozen=True)
class Flag:
    name: str
    enabled: bool
    description: str


def check_flag(name: str) -> str:
    """`name` if it is a known flag, else NotFound."""
    if name not in FLAGS:
        raise NotFound(f"no feature flag {name!r}; known: {', '.join(sorted(FLAGS))}")
    return name


def flag_list(values: dict[str, bool]) -> list[Flag]:
    """Every known flag with its value (on unless set off)."""
    return [Flag(n, values.get(n, True), d) for n, d in sorted(FLAGS.items())]


async def read_flags(uow: UnitOfWork) -> list[Flag]:
    """The known flags, as stored."""
    return flag_list(await uow.read(lambda tx: tx.flags.all()))


async def set_flag(
    uow: UnitOfWork, name: str, enabled: bool, *, clock: Callable[[], int] = now_ms
) -> Flag:
    """Turn a known flag on or off; takes effect on every node at its next poll."""
    check_flag(name)
    at = clock()
    await uow.write(lambda tx: tx.flags.set(name, enabled, at))
    return Flag(name, enabled, FLAGS[name])
