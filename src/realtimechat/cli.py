"""The `realtimechat` command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realtimechat.settings import Settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        k: v for k, v in vars(args).items() if k in ("host", "port", "data_dir") and v is not None
    }
    return Settings(**overrides)


def _no_database(settings: Settings) -> bool:
    """For commands on an existing deployment: say so, rather than create an empty one."""
    url = settings.db_url()
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        print(
            f"no database at {url.removeprefix('sqlite:///')}: pass the server's --data-dir "
            "(or set RTC_DATA_DIR, or RTC_DATABASE_URL)",
            file=sys.stderr,
        )
        return True
    return False


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, help="where the SQLite database and secrets live (./data)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `realtimechat` command."""
    parser = argparse.ArgumentParser(
        prog="realtimechat",
        description="RealTimeChat: team chat that loses, duplicates and reorders nothing.",
        epilog="Every option can also be set with RTC_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run an API node (embedded default: SQLite, in-process)")
    serve.add_argument("--host", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (8000; 0 picks a free one)")
    _add_data_dir(serve)

    worker = sub.add_parser(
        "worker",
        help="run background work: outbox relay, housekeeping (serve runs it too by default)",
    )
    _add_data_dir(worker)

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    _add_data_dir(migrate)

    flags = sub.add_parser(
        "flags",
        help="list or switch runtime feature flags (push, email, uploads) on every node",
        description="Without arguments, lists the flags. Nodes and workers see a change "
        "within a second; jobs of a feature switched off wait, none are dropped.",
    )
    flags.add_argument("name", nargs="?", help="flag to switch")
    flags.add_argument("value", nargs="?", choices=["on", "off"], help="its new value")
    _add_data_dir(flags)

    reconcile = sub.add_parser(
        "reconcile",
        help="reconcile file storage with the database now (the worker does it periodically)",
        description="Removes abandoned uploads and objects with no file, corrects each "
        "team's usage, and prints what it fixed as JSON.",
    )
    _add_data_dir(reconcile)

    bench = sub.add_parser(
        "bench",
        help="measure throughput, latency, loss and duplicates (JSON on stdout)",
        description="Starts its own server on the embedded default unless given --url.",
    )
    bench.add_argument(
        "--url",
        help="benchmark running nodes instead of starting one (comma-separated: senders and "
        "listeners alternate between them)",
    )
    bench.add_argument("--shape", default="B", choices=["A", "B", "C", "conns"],
                       help="A: L=1 C=1 N=2000; B: L=10 C=8 N=2000; C: L=100 C=8 N=500; "
                            "conns: idle WebSockets (RSS per connection)")  # fmt: skip
    bench.add_argument("-L", "--listeners", type=int, help="listeners (SDK live sessions)")
    bench.add_argument("-C", "--senders", type=int, help="concurrent senders")
    bench.add_argument("-N", "--messages", type=int, help="messages in all")
    bench.add_argument("--via", default="ws", choices=["ws", "rest"], help="how senders send")
    bench.add_argument("--duration", type=float, help="send for this many seconds (a soak)")
    bench.add_argument("--window", type=int, default=1, help="sends in flight per sender (1)")
    bench.add_argument(
        "--channels", type=int, default=1,
        help="channels (1); sender i sends to channel i %% channels, listeners follow all",
    )  # fmt: skip
    bench.add_argument("--body-bytes", type=int, default=100, help="message size (100)")
    bench.add_argument("--connections", type=int, default=10_000, help="for --shape conns")
    bench.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")

    smoke = sub.add_parser(
        "smoke",
        help="post-deploy smoke test of a running node (exit 0: every step passed)",
        description="Registers two throwaway users (@smoke.invalid), sends over REST and "
        "receives over the WebSocket, checks /livez and /readyz, then cleans up. "
        "Prints a line per step; exits 0 when all passed, 1 otherwise.",
    )
    smoke.add_argument("url", help="the node's base URL, e.g. https://chat.example.com")
    smoke.add_argument("--timeout", type=float, default=30.0, help="for the whole check (30 s)")
    smoke.add_argument("--json", action="store_true", help="print the report as JSON")

    backup = sub.add_parser(
        "backup",
        help="back up the embedded data (SQLite snapshot, secret.key, files) to a .tar.gz",
        description="Consistent while servers run. PostgreSQL: use pg_dump (exit 2 here); "
        "see docs/operations.md.",
    )
    backup.add_argument("out", type=Path, help="archive to write (a directory: a dated name in it)")
    _add_data_dir(backup)

    restore = sub.add_parser(
        "restore",
        help="restore a backup archive into a data directory (stop its servers first)",
        description="Refuses a non-empty data directory unless --force (which moves the old "
        "data aside). PostgreSQL: use pg_restore (exit 2 here); see docs/operations.md.",
    )
    restore.add_argument("archive", type=Path, help="a .tar.gz written by `realtimechat backup`")
    restore.add_argument("--force", action="store_true", help="replace existing data")
    _add_data_dir(restore)

    args = parser.parse_args(argv)
    settings = _settings(args)
    if args.command == "serve":
        from realtimechat.server import serve as run

        run(settings)
    elif args.command == "worker":
        from realtimechat.worker_process import run as run_worker

        run_worker(settings)
    elif args.command == "bench":
        import asyncio

        import orjson

        from realtimechat.bench.runner import BenchConfig
        from realtimechat.bench.runner import run as run_bench

        config = BenchConfig(
            shape=args.shape, url=args.url, listeners=args.listeners, senders=args.senders,
            messages=args.messages, via=args.via, duration_s=args.duration,
            window=args.window, channels=args.channels, body_bytes=args.body_bytes,
            connections=args.connections,
            progress=not args.no_progress,
        )  # fmt: skip
        report = asyncio.run(run_bench(config))
        print(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return 0 if report.get("lost", 0) == 0 and report.get("duplicated", 0) == 0 else 1
    elif args.command == "flags":
        return _flags(settings, args.name, args.value)
    elif args.command == "reconcile":
        return _reconcile(settings)
    elif args.command == "smoke":
        return _smoke(args.url, args.timeout, args.json)
    elif args.command in ("backup", "restore"):
        return _backup_or_restore(settings, args)
    elif args.command == "migrate":
        from realtimechat.storage.migrate import upgrade

        upgrade(settings)
        print(f"database is up to date: {settings.db_url()}")
    return 0


def _reconcile(settings: Settings) -> int:
    import asyncio

    import orjson

    from realtimechat.bootstrap import build_admin
    from realtimechat.storage.migrate import upgrade

    if _no_database(settings):
        return 2
    upgrade(settings)
    admin = build_admin(settings, files=True)

    async def run() -> dict[str, object]:
        assert admin.files is not None
        async with admin.running():
            return (await admin.files.reconcile()).to_json()

    print(orjson.dumps(asyncio.run(run()), option=orjson.OPT_INDENT_2).decode())
    return 0


def _flags(settings: Settings, name: str | None, value: str | None) -> int:
    import asyncio

    from realtimechat.bootstrap import build_admin
    from realtimechat.ids import now_ms
    from realtimechat.services.flags import FLAGS, flag_list
    from realtimechat.storage.migrate import upgrade

    if name is not None and (name not in FLAGS or value is None):
        known = ", ".join(sorted(FLAGS))
        print(f"usage: realtimechat flags [NAME on|off]; known flags: {known}", file=sys.stderr)
        return 2
    if _no_database(settings):
        return 2
    upgrade(settings)
    admin = build_admin(settings)
    db, uow = admin.db, admin.uow
    try:
        if name is not None:
            uow.setup(lambda tx: tx.flags.set(name, value == "on", now_ms()))
        for flag in flag_list(uow.setup(lambda tx: tx.flags.all())):
            print(f"{flag.name:10} {'on' if flag.enabled else 'off':4} {flag.description}")
    finally:
        asyncio.run(db.close())
    return 0


def _smoke(url: str, timeout_s: float, as_json: bool) -> int:
    import asyncio

    import orjson

    from realtimechat.ops.smoke import StepResult, smoke

    def show(step: StepResult) -> None:
        # As each step ends, so a CI log shows where a hanging check is.
        print(step.line(), flush=True)

    report = asyncio.run(smoke(url, timeout_s=timeout_s, on_step=None if as_json else show))
    if as_json:
        print(orjson.dumps(report.to_json(), option=orjson.OPT_INDENT_2).decode())
    else:
        print(report.verdict())
    return 0 if report.ok else 1


def _backup_or_restore(settings: Settings, args: argparse.Namespace) -> int:
    from realtimechat.ops.backup import BackupError, NotEmbedded, backup, restore

    try:
        if args.command == "backup":
            done = backup(settings, args.out)
            print(
                f"backup written: {done.archive} ({done.archive_bytes} bytes, "
                f"{done.duration_s} s): schema {done.alembic_revision}, {done.messages} "
                f"messages, {done.events} events, {done.files} files, "
                f"secret.key {'included' if done.secret_key else 'MISSING'}"
            )
        else:
            got = restore(settings, args.archive, force=args.force)
            print(
                f"restored into {got.data_dir} the backup of {got.created_at}: schema "
                f"{got.alembic_revision}, {got.messages} messages, {got.events} events, "
                f"{got.files} files, integrity ok; {got.epochs_renewed} channel epochs renewed"
            )
            if got.moved_aside is not None:
                print(f"the data it replaced is in {got.moved_aside}")
            for warning in got.warnings:
                print(f"warning: {warning}", file=sys.stderr)
    except NotEmbedded as exc:
        print(f"realtimechat {args.command}: {exc}", file=sys.stderr)
        return 2
    except BackupError as exc:
        print(f"realtimechat {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
