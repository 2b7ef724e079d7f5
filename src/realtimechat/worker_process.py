"""`realtimechat worker`: migrate, build the worker process, run it until SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from realtimechat.bootstrap import build_worker
from realtimechat.observability.logging import configure_logging
from realtimechat.observability.tracing import configure_tracing
from realtimechat.observability.tracing import shutdown as shutdown_tracing
from realtimechat.settings import Settings
from realtimechat.storage.migrate import upgrade

log = logging.getLogger(__name__)


async def _main(settings: Settings) -> None:
    process = build_worker(settings)
    async with process.running():
        worker = process.worker
        metrics_port = _serve_metrics(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if metrics_port is not None:  # before the ready line, so whoever waits for it has both
            print(
                f"worker metrics at http://{settings.worker_metrics_host}:{metrics_port}/metrics",
                flush=True,
            )
        print(
            f"RealTimeChat worker is running (outbox relay: {'on' if worker.relay else 'off'}; "
            f"push: {worker.providers.push.name}, e-mail: {worker.providers.email.name})",
            flush=True,
        )
        await stop.wait()
        log.info("worker stopping")


def _serve_metrics(settings: Settings) -> int | None:
    """Serve /metrics on the worker's own port; the port, or None if it is taken."""
    try:
        server, _thread = start_http_server(
            settings.worker_metrics_port, addr=settings.worker_metrics_host
        )
    except OSError as exc:
        # Several workers on one host: the first serves; the others run without.
        log.warning("worker metrics port %d unavailable: %s", settings.worker_metrics_port, exc)
        return None
    return int(server.server_port)


def run(settings: Settings) -> None:
    """Migrate, then run the worker until SIGTERM/SIGINT."""
    configure_logging(settings.log_level, settings.log_format)
    configure_tracing(settings.otel_endpoint, "realtimechat-worker")
    upgrade(settings)
    try:
        asyncio.run(_main(settings))
    finally:
        shutdown_tracing()
