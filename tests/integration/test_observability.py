"""What on-call sees: /metrics moving under a bench, JSON logs with ids and no secrets,
traces across HTTP, WebSocket sends and the database, and the worker's metrics port."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from realtimechat.observability import metrics as catalogue
from tests.support import (
    OPERATOR,
    ServerProcess,
    WorkerProcess,
    WsClient,
    new_user,
    running_server,
    team_channel,
)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.get(f"{url}/metrics", headers=OPERATOR)
    assert resp.status_code == 200, resp.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of a metric's samples whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and want <= set(lbls))


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


def catalogue_names() -> set[str]:
    """Every rtc_ metric the code declares, as a scrape shows it."""
    from prometheus_client import REGISTRY

    out = set()
    for family in REGISTRY.collect():
        if family.name.startswith("rtc_"):
            out.add(family.name)
    assert catalogue.SENDS  # the module declares them on import
    return out


async def test_a_scrape_during_the_bench_shows_every_metric_moving(
    server: ServerProcess,
) -> None:
    """On the shared server of each backend (rate limits lifted); counters compared by delta."""
    node = server
    before = await scrape(node.url)
    missing = {n.removesuffix("_total") for n in catalogue_names()} - {
        n.removesuffix("_total").removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for n in names(before)
    }
    # Labelled metrics show only once a label set was used; the rest must be there now.
    assert missing <= {
        "rtc_http_requests", "rtc_http_request_duration_seconds", "rtc_shed",
        "rtc_rate_limited", "rtc_message_sends", "rtc_ws_frames", "rtc_provider_calls",
        "rtc_provider_call_seconds", "rtc_provider_breaker_state", "rtc_provider_in_flight",
        "rtc_notification_results", "rtc_login_failures",
    }, missing  # fmt: skip
    bench = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "realtimechat", "bench", "--url", node.url,
        "-L", "3", "-C", "2", "-N", "400", "--no-progress",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    # During the run: live connections show (the bench holds them open until the end).
    during = await scrape(node.url)
    for _ in range(200):
        if total(during, "rtc_ws_connections") >= 3:
            break
        await asyncio.sleep(0.05)
        during = await scrape(node.url)
    assert total(during, "rtc_ws_connections") >= 3
    out, err = await asyncio.wait_for(bench.communicate(), 120)
    assert bench.returncode == 0, err.decode()[-2000:]
    report = json.loads(out)
    assert report["lost"] == report["duplicated"] == 0
    # Over the limit on purpose: counted as shed, answered 413.
    async with httpx.AsyncClient(timeout=10) as http:
        big = await http.post(f"{node.url}/api/v1/messages", content=b"x" * 300_000,
                              headers={"content-type": "application/json"})  # fmt: skip
    assert big.status_code == 413
    after = await scrape(node.url)

    def moved(name: str, **labels: str) -> bool:
        return total(after, name, **labels) > total(before, name, **labels)

    for name, labels in [
        ("rtc_http_requests_total", {"route": "/api/v1/auth/login", "status": "200"}),
        ("rtc_http_request_duration_seconds_count", {"route": "/api/v1/auth/login"}),
        ("rtc_message_sends_total", {"transport": "ws", "outcome": "ok"}),
        ("rtc_ws_frames_total", {"direction": "in", "type": "send"}),
        ("rtc_ws_frames_total", {"direction": "out", "type": "event"}),
        ("rtc_events_published_total", {}),
        ("rtc_events_delivered_total", {}),
        ("rtc_send_to_deliver_seconds_count", {}),
        ("rtc_shed_total", {"reason": "body_too_large"}),
    ]:
        assert moved(name, **labels), (name, labels)
    assert (
        total(after, "rtc_events_delivered_total") - total(before, "rtc_events_delivered_total")
        >= 3 * 400
    )
    assert total(after, "rtc_send_to_deliver_seconds_bucket", le="+Inf") >= 3 * 400
    # Gauges read from the database and the bus at scrape time.
    for gauge in ("rtc_outbox_rows", "rtc_outbox_lag_seconds", "rtc_db_write_queue",
                  "rtc_db_pool_size", "rtc_file_storage_used_bytes", "rtc_bus_up"):  # fmt: skip
        assert (gauge, ()) in after, gauge
    assert total(after, "rtc_bus_up") == 1
    assert ("rtc_notification_jobs", (("kind", "email"), ("state", "pending"))) in after
    assert ("rtc_bus_consumer_lag_seconds", ()) in after


async def test_logs_are_json_lines_with_request_and_user_ids_and_no_secrets(
    tmp_path: Path,
) -> None:
    secret_body = "the launch code is 0000"
    async with running_server(tmp_path) as srv:
        alice = await new_user(srv, "alice")
        channel = await team_channel(alice)
        resp = await alice.request(
            "POST",
            "/api/v1/messages",
            json={"channel_id": channel["id"], "body": secret_body, "client_msg_id": "c1"},
            headers={"X-Request-ID": "trace-me-123"},
        )
        assert resp.status_code == 201
        assert resp.headers["x-request-id"] == "trace-me-123"
        generated = await alice.request("GET", "/api/v1/teams")
        assert len(generated.headers["x-request-id"]) == 32
        await alice.aclose()
        await srv.signal(15)
    lines = [line for line in srv.output if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records, srv.output[-20:]
    sent = [r for r in records if r.get("request_id") == "trace-me-123"]
    assert sent, "no log line carried the request id"
    assert sent[0]["route"] == "/api/v1/messages"
    assert sent[0]["user_id"] == alice.user_id
    assert {"timestamp", "level", "logger", "event"} <= set(sent[0])
    text = "\n".join(srv.output)
    for secret in (secret_body, "correct horse", alice.token or "-", alice.refresh_token):
        assert secret not in text


class Collector(ThreadingHTTPServer):
    """A fake OTLP/HTTP collector: keeps every span it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.spans: list[Any] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, predicate: Any, timeout: float = 30) -> list[Any]:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.spans), timeout), [
                s.name for s in self.spans
            ]
            return list(self.spans)


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.server.changed:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    self.server.spans.extend(scope_spans.spans)
            self.server.changed.notify_all()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    server.thread.start()
    yield server
    server.shutdown()


async def test_traces_join_http_websocket_sends_and_the_database(
    tmp_path: Path, collector: Collector
) -> None:
    async with running_server(tmp_path, RTC_OTEL_ENDPOINT=collector.url) as srv:
        alice = await new_user(srv, "alice")
        channel = await team_channel(alice)
        await alice.send(channel["id"], "over REST")
        ws = await WsClient.connect(srv, alice.token or "")
        await ws.send({"type": "send", "channel_id": channel["id"], "body": "over WS",
                       "client_msg_id": "ws-1"})  # fmt: skip
        while (await ws.recv())["type"] != "send_ok":
            pass  # its own event may come first
        await ws.close()

        def complete(spans: list[Any]) -> bool:
            return any(s.name == "ws send" for s in spans) and any(
                s.name.startswith("POST /api/v1/messages") for s in spans
            )

        spans = collector.wait_for(complete)
        by_trace: dict[bytes, list[Any]] = {}
        for span in spans:
            by_trace.setdefault(span.trace_id, []).append(span)
        rest = next(s for s in spans if s.name.startswith("POST /api/v1/messages"))
        rest_trace = {s.name.split()[0] for s in by_trace[rest.trace_id]}
        # The database statements of the send run on the writer thread, in its trace.
        assert {"UPDATE", "INSERT"} & rest_trace, rest_trace
        ws_send = next(s for s in spans if s.name == "ws send")
        ws_trace = {s.name.split()[0] for s in by_trace[ws_send.trace_id]}
        assert {"UPDATE", "INSERT"} & ws_trace, ws_trace
        await alice.aclose()
        await srv.signal(15)
    trace_ids = {rest.trace_id.hex(), ws_send.trace_id.hex()}
    logged = [json.loads(line) for line in srv.output if line.startswith("{")]
    assert any(r.get("trace_id") in trace_ids for r in logged), "no log line has a trace id"


async def test_the_worker_serves_its_own_metrics(tmp_path: Path) -> None:
    worker = WorkerProcess(tmp_path, {"RTC_WORKER_METRICS_PORT": "0"})
    await worker.start()
    try:
        [line] = [x for x in worker.output if x.startswith("worker metrics at ")]
        url = line.rsplit(" ", 1)[-1].removesuffix("/metrics")
        samples = await scrape(url)
        assert ("rtc_provider_breaker_state", (("provider", "push:log"),)) in samples
        for _ in range(100):
            if ("rtc_outbox_rows", ()) in samples:
                break
            await asyncio.sleep(0.1)
            samples = await scrape(url)
        assert ("rtc_outbox_rows", ()) in samples
    finally:
        await worker.kill()
