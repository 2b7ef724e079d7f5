"""The chaos harness: a real cluster, a steady SDK send load, and exactly-once accounting.

The cluster is what production looks like, every part a separate process: a throwaway
PostgreSQL, a throwaway redis-server, node A and node B (`realtimechat serve` with
`RTC_RUN_WORKER=false`), one `realtimechat worker` (the outbox relay), and a TCP
balancer (tests/chaos/balancer.py) in front of the nodes. Clients only know the
balancer: half of them get a frontend that prefers node A, half one that prefers node B,
and either frontend falls over to the other node when its first choice refuses.

A scenario (`run_scenario`) makes fresh users and a fresh channel, logs each user in
through the balancer with the SDK (`ChatClient` + `LiveSession`, which reconnects,
resumes, backfills, dedupes and retries sends with one client_msg_id), and runs a steady
load: every client sends its share of CHAOS_MESSAGES with `LiveSession.send()`, a few in
flight at a time, and every client listens. The load is in three phases — before the
fault, during it, after it — so messages are sent in all three. The fault itself is a
coroutine given a `Run`: it applies the fault, says so (`run.applied()`, which lets the
second phase go), removes it (`run.ended()`, the third phase), and starts the recovery
probe (`run.recover_from_now()`): a message sent at that moment, whose arrival at the
last listener ends the recovery time.

Afterwards every listener's events are compared with the server's own
`GET /channels/{id}/events` (the truth) and with the acknowledged sends; `account()`
turns that into the counts of the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from realtimechat_client import ChatClient, ClientOptions, Event, LiveSession, LiveStats, Message
from tests.chaos.balancer import Backend, Balancer
from tests.postgres import PostgresServer
from tests.redis_server import RedisServer
from tests.support import ServerProcess, WorkerProcess, unique
from tests.support import eventually as support_eventually

CLIENTS = max(2, int(os.environ.get("CHAOS_CLIENTS", "4")))
MESSAGES = max(6, int(os.environ.get("CHAOS_MESSAGES", "100")))
# How long an outage that is not ended by an event (PostgreSQL down) lasts once it is
# visible: the length of the fault, not a wait for something to happen.
OUTAGE_S = float(os.environ.get("CHAOS_OUTAGE_S", "1.0"))
IN_FLIGHT = 2  # sends in flight per client
PASSWORD = "correct horse"

NODE_ENV = {
    "RTC_LIMITS__USER_REQUESTS_PER_MINUTE": "1000000",
    "RTC_LIMITS__ANONYMOUS_REQUESTS_PER_MINUTE": "1000000",
    "RTC_LIMITS__WS_FRAMES_PER_MINUTE": "1000000",
    "RTC_RUN_WORKER": "false",  # the relay runs in the worker process only
    "RTC_REDIS__TIMEOUT_S": "0.5",
    "RTC_REDIS__RETRY_S": "0.1",
    "RTC_DB__TIMEOUT_S": "2",
    "RTC_WS__HEARTBEAT_MS": "5000",
}

# Quick to notice trouble and to come back (loopback), but the SDK's own logic throughout.
OPTIONS = ClientOptions(
    reconnect_base_s=0.05,
    reconnect_cap_s=1.0,
    retry_base_s=0.05,
    retry_cap_s=1.0,
    max_retries=10,
    ws_send_timeout_s=3.0,
    gap_grace_s=0.3,
    tail_check_s=1.0,
    start_from="zero",
)


async def eventually(
    check: Callable[[], Awaitable[bool]], timeout: float = 20, what: str = "a condition"
) -> float:
    """`tests.support.eventually`, timed: the seconds it took (the chaos table reports them)."""
    started = time.monotonic()
    await support_eventually(check, timeout, what)
    return time.monotonic() - started


# ---- processes --------------------------------------------------------------------------
@dataclass
class Cluster:
    pg: PostgresServer
    redis: RedisServer
    nodes: dict[str, ServerProcess]  # "A", "B"
    worker: WorkerProcess
    balancer: Balancer
    env: dict[str, str]
    tmp: Path
    frontends: dict[str, str] = field(default_factory=dict)  # node preferred -> URL
    pg_up: bool = True
    workers: list[WorkerProcess] = field(default_factory=list)  # every one started, in order

    @classmethod
    async def start(
        cls, stack: contextlib.AsyncExitStack, pg: PostgresServer, redis: RedisServer, tmp: Path
    ) -> Cluster:
        env = {**NODE_ENV, "RTC_DATABASE_URL": pg.url, "RTC_REDIS_URL": redis.url}
        nodes: dict[str, ServerProcess] = {}
        for name in ("A", "B"):  # one after the other: each runs the migrations first
            node = ServerProcess(tmp / f"node-{name}", env)
            stack.push_async_callback(node.stop)
            await node.start()
            nodes[name] = node
        worker = WorkerProcess(tmp / "worker", env)
        await worker.start()
        balancer = Balancer([Backend(name, node.port) for name, node in nodes.items()])
        cluster = cls(pg, redis, nodes, worker, balancer, env, tmp, workers=[worker])
        stack.push_async_callback(cluster.aclose)
        for i, name in enumerate(nodes):
            cluster.frontends[name] = await balancer.frontend(prefer=i)
        return cluster

    async def aclose(self) -> None:
        await self.balancer.aclose()
        await self.worker.kill()

    def save_logs(self, directory: Path) -> None:
        """Each process's output, for a look after the run."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, node in self.nodes.items():
            (directory / f"node-{name}.log").write_text("\n".join(node.output) + "\n")
        for i, worker in enumerate(self.workers, 1):
            (directory / f"worker-{i}.log").write_text("\n".join(worker.output) + "\n")
        for src, dst in (
            (self.pg.root / "log", "postgres.log"),
            (self.redis.root / "log", "redis.log"),
        ):
            with contextlib.suppress(OSError):
                (directory / dst).write_bytes(src.read_bytes())

    # -- faults ------------------------------------------------------------------------
    async def kill_node(self, name: str) -> None:
        """kill -9 one node (no drain, no going_away: a crash)."""
        code = await self.nodes[name].signal(signal.SIGKILL)
        assert code == -signal.SIGKILL, code

    async def start_node(self, name: str) -> None:
        """Start a killed node again (on its old port; the balancer is told either way)."""
        node = self.nodes[name]
        try:
            await node.start()
        except RuntimeError:  # the old port was taken meanwhile: any port will do
            node.port = 0
            await node.start()
        self.balancer.set_backend(name, node.port)

    def node_up(self, name: str) -> bool:
        proc = self.nodes[name].proc
        return proc is not None and proc.poll() is None

    async def kill_worker(self) -> None:
        await self.worker.kill()

    async def start_worker(self) -> WorkerProcess:
        """A new worker process (the old one's log stays with the old object)."""
        self.worker = WorkerProcess(self.tmp / f"worker-{len(self.workers) + 1}", self.env)
        self.workers.append(self.worker)
        await self.worker.start()
        return self.worker

    async def stop_postgres(self) -> None:
        self.pg_up = False
        await asyncio.to_thread(self.pg.stop, "immediate")

    async def start_postgres(self) -> None:
        await asyncio.to_thread(self.pg.start)
        self.pg_up = True

    async def kill_redis(self) -> None:
        await asyncio.to_thread(self.redis.kill)

    async def start_redis(self) -> None:
        await asyncio.to_thread(self.redis.start)

    async def heal(self) -> None:
        """Bring back whatever a failed scenario left down."""
        if not self.pg_up:
            await self.start_postgres()
        if self.redis.process is None:
            await self.start_redis()
        for name in self.nodes:
            if not self.node_up(name):
                await self.start_node(name)
        if not self.worker.running:
            await self.start_worker()

    # -- state -------------------------------------------------------------------------
    def log_marks(self) -> dict[str, int]:
        """Where each node's output is now (to look at one scenario's lines later)."""
        return {name: len(node.output) for name, node in self.nodes.items()}

    def unhandled_errors(self, marks: dict[str, int]) -> list[str]:
        """Requests or WebSockets that died of an exception since `marks` (a 500 or worse).

        A dependency that is down must cost a 503 with Retry-After, never an internal error.
        """
        found: list[str] = []
        for name, node in self.nodes.items():
            lines = node.output[marks.get(name, 0) :]
            for i, line in enumerate(lines):
                if "Exception in ASGI application" in line:
                    trace: list[str] = []
                    for ln in lines[i + 1 :]:
                        if ln.startswith(("INFO:", "WARNING:", "ERROR:")):
                            break
                        trace.append(ln)
                    # The deepest frame of the edge layer: the route or the gateway.
                    ours = [ln.strip() for ln in trace if "/realtimechat/edge/" in ln]
                    where = ours[-1] if ours else "?"
                    found.append(f"node {name}: unhandled exception in {where}")
        return found

    async def outbox_rows(self) -> int:
        def count() -> int:
            with psycopg.connect(self.pg.url, connect_timeout=2) as conn:
                row = conn.execute("SELECT count(*) FROM outbox").fetchone()
                return int(row[0]) if row else 0

        return await asyncio.to_thread(count)

    async def readiness(self, name: str) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=5) as http:
            body: dict[str, Any] = (await http.get(f"{self.nodes[name].url}/readyz")).json()
            return body

    async def check_status(self, name: str, check: str) -> str:
        status: str = (await self.readiness(name))["checks"][check]["status"]
        return status

    async def wait_status(self, check: str, status: str, timeout: float = 20) -> float:
        """Until every live node's /readyz says `check` is `status`; seconds taken."""

        async def all_nodes() -> bool:
            for name in self.nodes:
                if self.node_up(name) and await self.check_status(name, check) != status:
                    return False
            return True

        return await eventually(all_nodes, timeout, f"{check} {status} on every node")


# ---- one client -------------------------------------------------------------------------
@dataclass(eq=False)
class Party:
    """One user: an SDK client and live session through the balancer, sending and listening."""

    index: int
    home: str  # the node its balancer frontend prefers
    user_id: str
    client: ChatClient
    session: LiveSession
    events: list[Event] = field(default_factory=list)  # as the application got them
    arrived: dict[str, float] = field(default_factory=dict)  # client_msg_id -> monotonic
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    async def read(self, channel_id: str) -> None:
        async for ev in self.session.events():
            if ev["channel_id"] != channel_id:
                continue
            self.events.append(ev)
            if ev["event"] == "message.created":
                cmid = str(ev["data"]["client_msg_id"])
                self.arrived.setdefault(cmid, time.monotonic())
                waiter = self.waiters.get(cmid)
                if waiter is not None:
                    waiter.set()

    async def wait_for(self, cmid: str) -> float:
        """When the message `cmid` reached this application (waiting for it if need be)."""
        if cmid not in self.arrived:
            await self.waiters.setdefault(cmid, asyncio.Event()).wait()
        return self.arrived[cmid]


async def make_parties(cluster: Cluster, name: str) -> tuple[list[Party], str]:
    """CLIENTS fresh users in a fresh channel, each with a started live session."""
    homes = list(cluster.frontends)
    slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
    users: list[tuple[str, str, str]] = []  # (email, id, home)
    registrar = ChatClient(cluster.frontends[homes[0]], OPTIONS)
    try:
        for i in range(CLIENTS):
            email = f"{unique(f'{slug}-{i}')}@example.com"
            user = await registrar.register(email, PASSWORD, f"{name}-{i}")
            users.append((email, str(user["id"]), homes[i % len(homes)]))
    finally:
        await registrar.aclose()
    clients: list[ChatClient] = []
    for email, _, home in users:
        client = ChatClient(cluster.frontends[home], OPTIONS)
        await client.login(email, PASSWORD)
        clients.append(client)
    owner = clients[0]
    team = await owner.create_team(unique(slug))
    channel = await owner.create_channel(team["id"], slug)
    for _, user_id, _ in users[1:]:
        await owner.add_team_member(team["id"], user_id=user_id)
        await owner.add_channel_member(channel["id"], user_id)
    channel_id = str(channel["id"])
    parties: list[Party] = []
    for i, ((_, user_id, home), client) in enumerate(zip(users, clients, strict=True)):
        party = Party(i, home, user_id, client, LiveSession(client, start_from="zero"))
        await party.session.start()
        party.reader = asyncio.create_task(party.read(channel_id), name=f"chaos-reader-{i}")
        parties.append(party)
    async with asyncio.timeout(20):
        for party in parties:
            await party.session.wait_connected()
    return parties, channel_id


async def close_parties(parties: list[Party]) -> None:
    for party in parties:
        await party.session.aclose()
    for party in parties:
        if party.reader is not None:
            party.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await party.reader
        await party.client.aclose()


# ---- accounting --------------------------------------------------------------------------
@dataclass
class Counts:
    sent: int = 0  # distinct client_msg_ids handed to send()
    acknowledged: int = 0  # sends answered with the stored message
    stored: int = 0  # message.created events on the server, the truth
    expected: int = 0  # acknowledged x listeners
    delivered: int = 0  # acknowledged messages that reached a listener (once each counted)
    lost: int = 0  # truth events or acknowledged messages a listener never got
    duplicated: int = 0  # the same event (seq) or message (client_msg_id) delivered again
    reordered: int = 0  # an event delivered after one with a higher seq
    mismatched: int = 0  # a delivered event that differs from the server's event of that seq
    server_problems: list[str] = field(default_factory=list)


def account(
    truth: list[Event],
    sent: set[str],
    acked: Mapping[str, Mapping[str, Any]],
    deliveries: list[list[Event]],
) -> Counts:
    """Compare what each listener got with the truth and the acknowledged sends."""
    c = Counts(sent=len(sent), acknowledged=len(acked), expected=len(acked) * len(deliveries))
    problems = c.server_problems
    by_seq = {int(e["seq"]): e for e in truth}
    seqs = [int(e["seq"]) for e in truth]
    if seqs != list(range(1, len(seqs) + 1)):
        problems.append(f"server seqs are not 1..{len(seqs)} without gaps")
    stored = Counter(
        str(e["data"]["client_msg_id"]) for e in truth if e["event"] == "message.created"
    )
    c.stored = sum(stored.values())
    if twice := [k for k, n in stored.items() if n > 1]:
        problems.append(f"stored more than once: {twice[:5]}")
    if missing := [k for k in acked if k not in stored]:
        problems.append(f"acknowledged but not stored: {missing[:5]}")
    if strays := [k for k in stored if k not in sent]:
        problems.append(f"stored but never sent: {strays[:5]}")
    for cmid, msg in acked.items():
        ev = next((e for e in truth if e["data"].get("client_msg_id") == cmid), None)
        if ev is not None and (ev["seq"] != msg["seq"] or ev["data"]["id"] != msg["id"]):
            problems.append(f"{cmid}: acknowledged as seq {msg['seq']}, stored as {ev['seq']}")
    for got in deliveries:
        seen: set[int] = set()
        top = 0
        cmids: Counter[str] = Counter()
        for ev in got:
            seq = int(ev["seq"])
            if seq in seen:
                c.duplicated += 1
                continue
            seen.add(seq)
            if seq < top:
                c.reordered += 1
            top = max(top, seq)
            want = by_seq.get(seq)
            if want is None or (want["event"], want["data"].get("id")) != (
                ev["event"],
                ev["data"].get("id"),
            ):
                c.mismatched += 1
            if ev["event"] == "message.created":
                cmids[str(ev["data"]["client_msg_id"])] += 1
        c.duplicated += sum(n - 1 for n in cmids.values() if n > 1)
        c.lost += len(set(by_seq) - seen)
        c.lost += sum(1 for k in acked if k not in stored and k not in cmids)
        c.delivered += sum(1 for k in acked if k in cmids)
    return c


@dataclass
class Row:
    """One line of the report."""

    scenario: str
    clients: int
    sent: int
    acknowledged: int
    delivered: int
    expected: int
    lost: int
    duplicated: int
    reordered: int
    recovery_s: float | None
    duration_s: float
    stored: int = 0
    mismatched: int = 0
    reconnects: int = 0  # live-session connections after the first, all clients
    redundant: int = 0  # event copies the SDK received and dropped (dedupe at work)
    backfills: int = 0  # gap backfills and resyncs paged over REST
    rest_sends: int = 0  # send attempts over REST (while not connected)
    session_stats: dict[str, int] = field(default_factory=dict)  # LiveStats, summed
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return (
            not self.problems
            and self.lost == 0
            and self.duplicated == 0
            and self.reordered == 0
            and self.mismatched == 0
            and self.acknowledged == self.sent
            and self.delivered == self.expected
        )


RESULTS: list[Row] = []

COLUMNS = [
    ("scenario", 18),
    ("clients", 7),
    ("sent", 6),
    ("acked", 6),
    ("delivered", 9),
    ("expected", 8),
    ("lost", 4),
    ("dup", 4),
    ("reord", 5),
    ("recovery_s", 10),
    ("took_s", 6),
    ("reconn", 6),
    ("dropped_dups", 12),
]


def table(rows: list[Row]) -> str:
    """The report as a fixed-width text table, notes below it."""
    head = " ".join(f"{name:>{w}}" if i else f"{name:<{w}}" for i, (name, w) in enumerate(COLUMNS))
    lines = [head, "-" * len(head)]
    for r in rows:
        rec = "-" if r.recovery_s is None else f"{r.recovery_s:.2f}"
        values = [
            r.scenario, r.clients, r.sent, r.acknowledged, r.delivered, r.expected, r.lost,
            r.duplicated, r.reordered, rec, f"{r.duration_s:.1f}", r.reconnects, r.redundant,
        ]  # fmt: skip
        lines.append(
            " ".join(
                f"{v!s:>{w}}" if i else f"{v!s:<{w}}"
                for i, ((_, w), v) in enumerate(zip(COLUMNS, values, strict=True))
            )
        )
    lines += [
        "delivered: acknowledged messages that reached a client, summed over the clients",
        "  (expected: acknowledged x clients); lost, dup, reord: summed over the clients,",
        "  checked by seq and by client_msg_id against the server's event log;",
        "recovery_s: from the end of the fault (for a node: the kill) until a message sent",
        "  then reached every client; reconn: reconnections of live sessions;",
        "dropped_dups: event copies the SDK received again and dropped",
    ]
    for r in rows:
        for note in r.notes:
            lines.append(f"  {r.scenario}: {note}")
        for problem in r.problems:
            lines.append(f"  {r.scenario}: PROBLEM: {problem}")
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "clients": CLIENTS,
        "messages_per_scenario": MESSAGES,
        "scenarios": [{**dataclasses.asdict(r), "clean": r.clean} for r in rows],
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))


# ---- one scenario --------------------------------------------------------------------------
class Run:
    """The load of one scenario, and the hooks a fault uses to pace it."""

    def __init__(self, cluster: Cluster, name: str, parties: list[Party], channel_id: str) -> None:
        self.cluster = cluster
        self.name = name
        self.parties = parties
        self.channel_id = channel_id
        self.sent: set[str] = set()
        self.acked: dict[str, Message] = {}
        self.notes: list[str] = []
        self.problems: list[str] = []
        # Phase 0 goes at once, phase 1 once the fault is applied, phase 2 once it ended.
        self.gates = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
        self.gates[0].set()
        self.trigger = asyncio.Event()  # set once a sixth of the load is acknowledged
        self.trigger_at = max(1, MESSAGES // 6)
        self.phase_size = [0, 0, 0]
        self.phase_acked = [0, 0, 0]
        self.phase_done = [asyncio.Event(), asyncio.Event(), asyncio.Event()]
        self.t_recover: float | None = None
        self.slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
        self.probe_cmid = f"{self.slug}-probe"
        self.probe: asyncio.Task[None] | None = None
        self.recovery_s: float | None = None

    # -- hooks for faults --------------------------------------------------------------
    def applied(self) -> None:
        """The fault is in place: send the second third of the load."""
        self.gates[1].set()

    def ended(self) -> None:
        """The fault is over: send the last third."""
        self.gates[1].set()
        self.gates[2].set()

    def recover_from_now(self, sender: Party | None = None) -> None:
        """Start the recovery clock and send the probe (through `sender`, party 0 by default)."""
        assert self.probe is None, "one probe per scenario"
        self.t_recover = time.monotonic()
        sender = sender or self.parties[0]
        self.probe = asyncio.create_task(self._probe(sender), name=f"chaos-probe-{self.name}")

    async def _probe(self, sender: Party) -> None:
        assert self.t_recover is not None
        await self.send(sender, self.probe_cmid)
        arrivals = await asyncio.gather(*(p.wait_for(self.probe_cmid) for p in self.parties))
        self.recovery_s = max(arrivals) - self.t_recover

    async def send(self, party: Party, cmid: str, body: str | None = None) -> Message:
        """One message through the party's live session (retried until acknowledged)."""
        self.sent.add(cmid)
        msg = await party.session.send(self.channel_id, body or cmid, cmid)
        self.acked[cmid] = msg
        return msg

    async def wait_phase(self, phase: int) -> None:
        await self.phase_done[phase].wait()

    # -- the load -----------------------------------------------------------------------
    async def load(self) -> None:
        queues: list[asyncio.Queue[tuple[str, int]]] = [asyncio.Queue() for _ in self.parties]
        third = MESSAGES / 3
        for k in range(MESSAGES):
            phase = min(2, int(k // third))
            self.phase_size[phase] += 1
            queues[k % len(self.parties)].put_nowait((f"{self.slug}-{k}", phase))
        for phase, size in enumerate(self.phase_size):
            if size == 0:
                self.phase_done[phase].set()

        async def sender(party: Party, queue: asyncio.Queue[tuple[str, int]]) -> None:
            while not queue.empty():
                cmid, phase = queue.get_nowait()
                await self.gates[phase].wait()
                await self.send(party, cmid)
                self.phase_acked[phase] += 1
                if self.phase_acked[phase] == self.phase_size[phase]:
                    self.phase_done[phase].set()
                if len(self.acked) >= self.trigger_at:
                    self.trigger.set()

        await asyncio.gather(
            *(
                sender(party, queue)
                for party, queue in zip(self.parties, queues, strict=True)
                for _ in range(IN_FLIGHT)
            )
        )

    async def all_delivered(self) -> None:
        """Every acknowledged message has reached every listener."""
        await asyncio.gather(*(p.wait_for(k) for p in self.parties for k in list(self.acked)))


Fault = Callable[[Run], Awaitable[None]]


async def server_truth(client: ChatClient, channel_id: str) -> list[Event]:
    return [ev async for ev in client.iter_events(channel_id)]


async def run_scenario(cluster: Cluster, name: str, fault: Fault, artifact: Path) -> Row:
    """Set up, load, fault, converge, account; the row is recorded even when it fails."""
    parties, channel_id = await make_parties(cluster, name)
    run = Run(cluster, name, parties, channel_id)
    marks = cluster.log_marks()
    started = time.monotonic()
    load = asyncio.create_task(run.load(), name=f"chaos-load-{name}")
    try:
        async with asyncio.timeout(120):
            await run.trigger.wait()
            await fault(run)
            run.ended()  # in case the fault did not say so
            if run.probe is None:
                run.recover_from_now()
            await load
            assert run.probe is not None
            await run.probe
    except TimeoutError:
        run.problems.append("the load or the probe did not finish within 120 s")
    except Exception as exc:
        run.problems.append(f"scenario failed: {exc!r}")
    finally:
        if not load.done():
            load.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await load
    try:
        async with asyncio.timeout(30):
            await run.all_delivered()
    except TimeoutError:
        run.problems.append("not every acknowledged message reached every listener within 30 s")
    duration = time.monotonic() - started
    try:
        async with asyncio.timeout(30):
            # Drained by the node that wrote the event (after its XADD) or by the worker.
            drained = await eventually(
                lambda: is_zero(cluster.outbox_rows()), 30, "the outbox to drain"
            )
        run.notes.append(f"outbox empty {drained:.1f} s after the load")
    except (AssertionError, TimeoutError) as exc:
        run.problems.append(str(exc) or "the outbox did not drain")
    truth = await server_truth(parties[0].client, channel_id)
    run.problems.extend(sorted(set(cluster.unhandled_errors(marks))))
    counts = account(truth, run.sent, run.acked, [p.events for p in parties])
    stats = [p.session.stats for p in parties]
    row = Row(
        scenario=name,
        clients=len(parties),
        sent=counts.sent,
        acknowledged=counts.acknowledged,
        delivered=counts.delivered,
        expected=counts.expected,
        lost=counts.lost,
        duplicated=counts.duplicated,
        reordered=counts.reordered,
        recovery_s=None if run.recovery_s is None else round(run.recovery_s, 3),
        duration_s=round(duration, 2),
        stored=counts.stored,
        mismatched=counts.mismatched,
        reconnects=sum(max(0, s.connects - 1) for s in stats),
        redundant=sum(s.events_received - s.events_delivered for s in stats),
        backfills=sum(s.gap_backfills + s.resyncs for s in stats),
        rest_sends=sum(s.sends_rest for s in stats),
        session_stats={
            f.name: sum(getattr(s, f.name) for s in stats)
            for f in dataclasses.fields(LiveStats)
            if f.type in (int, "int")  # the counters (not times, not optional values)
        },
        notes=run.notes,
        problems=run.problems + counts.server_problems,
    )
    row.notes.append(
        f"SDK: {row.session_stats['sends_ws']} send frames and {row.rest_sends} REST sends "
        f"for {row.sent} messages; {row.backfills} gap backfills/resyncs"
    )
    RESULTS.append(row)
    write_json(artifact, RESULTS)
    await close_parties(parties)
    return row


async def is_zero(n: Awaitable[int]) -> bool:
    return await n == 0
