"""Readiness from the probes it is handed: the verdict, the status code, what outsiders see."""

from __future__ import annotations

from collections.abc import Mapping

from realtimechat.observability.health import Health
from realtimechat.settings import Settings


class Probe:
    """Stands in for the database, the bus, the limiter and the store at once."""

    name = "local"

    def __init__(self, *, down: bool = False, status: str = "ok") -> None:
        self.down = down
        self.status = status

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("refused")

    def pool_status(self) -> dict[str, int]:
        return {"size": 1}

    def health(self) -> tuple[str, str | None]:
        return self.status, None if self.status == "ok" else "counting locally"


def health(
    *,
    db: Probe | None = None,
    limiter: Probe | None = None,
    providers: Mapping[str, Mapping[str, object]] | None = None,
    draining: bool = False,
) -> Health:
    async def jobs() -> dict[str, dict[str, int]]:
        return {"push": {"pending": 2}}

    async def refresh() -> None:
        return None

    return Health(
        settings=Settings(),
        database=db or Probe(),
        bus=Probe(),
        limiter=limiter or Probe(),
        store=Probe(),
        providers=lambda: providers or {},
        job_counts=jobs,
        draining=lambda: draining,
        refresh_stored=refresh,
    )


async def test_all_up_is_ok_with_details_for_the_operator_and_statuses_for_anyone() -> None:
    report = await health().ready()

    assert (report.status, report.http_status) == ("ok", 200)
    assert report.checks["database"]["pool"] == {"size": 1}
    assert report.checks["notifications"]["jobs"] == {"push": {"pending": 2}}
    assert report.statuses() == {
        name: {"status": "ok"}
        for name in ("database", "bus", "rate_limits", "storage", "notifications")
    }


async def test_a_database_down_is_down_and_503() -> None:
    report = await health(db=Probe(down=True)).ready()

    assert (report.status, report.http_status) == ("down", 503)
    assert report.checks["database"]["detail"] == "ConnectionError"


async def test_an_open_breaker_or_a_local_limiter_only_degrades() -> None:
    open_push = {"push": {"provider": "fcm", "state": "open"}}
    for report in [
        await health(providers=open_push).ready(),
        await health(limiter=Probe(status="degraded")).ready(),
    ]:
        assert (report.status, report.http_status) == ("degraded", 200)
    report = await health(providers=open_push).ready()
    assert report.checks["notifications"]["push"] == {"provider": "fcm", "state": "open"}


async def test_draining_wins_over_everything() -> None:
    report = await health(db=Probe(down=True), draining=True).ready()
    assert (report.status, report.http_status) == ("draining", 503)
