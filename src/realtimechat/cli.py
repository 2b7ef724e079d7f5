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

    migrate = sub.add_parser("migrate", help="bring the database schema up to date")
    _add_data_dir(migrate)

    args = parser.parse_args(argv)
    settings = _settings(args)
    if args.command == "serve":
        from realtimechat.server import serve as run

        run(settings)
    elif args.command == "migrate":
        from realtimechat.storage.migrate import upgrade

        upgrade(settings)
        print(f"database is up to date: {settings.database_url()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
