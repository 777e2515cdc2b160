"""The `tarx` command. Exit codes: 0 ok, 1 failure, 2 usage (argparse's own)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.config import Settings


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", help="bind address (env TARX_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env TARX_PORT, default 11440)")
    p.add_argument("--data-dir", type=Path, help="where the database and models live (env TARX_DATA_DIR)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tarx", description="TARX local AI runtime and console")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="run the runtime")
    serve.add_argument("--headless", action="store_true",
                       help="run in the foreground without the console (logs on stderr)")
    _serve_args(serve)
    return parser


def _settings(args: argparse.Namespace) -> Settings:

    from runtime.config import Settings  # lazily: keeps `tarx --help` fast

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("data_dir", args.data_dir))
                 if v is not None}
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in (None, "serve"):
        if args.command is None:
            # The console is not built yet: `tarx` runs the runtime in the foreground meanwhile.
            args = parser.parse_args(["serve", "--headless", *(argv or sys.argv[1:])])
        from runtime.server import serve

        try:
            return serve(_settings(args))
        except KeyboardInterrupt:
            return 0
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
