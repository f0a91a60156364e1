"""The ``countersign`` command line: one sub-module per command group, each with ``register``."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from collections.abc import Sequence

# Each module exposes ``register(subparsers)`` and sets ``func`` on its parsers; imported
# lazily so ``countersign check`` never pays for SQLAlchemy or Slack imports.
COMMAND_MODULES = ("check", "db", "tenant", "audit", "receipt", "simulate", "policy", "serve", "sandbox")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="countersign", description="Slack-native approval gate for AI agents.")
    parser.add_argument("--version", action="version", version=f"countersign {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"bot.cli.{name}")
        module.register(sub)
    return parser


def _version() -> str:
    try:
        return importlib.metadata.version("countersign")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
