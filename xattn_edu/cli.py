"""The ``xattn`` command line.

Each subcommand lives in the module that implements its idea; this file only wires
argument parsing to those modules and imports them lazily, so ``xattn --help`` is fast.
Errors that a user can fix (:class:`xattn_edu.errors.UserError`) are printed as one line
and exit with status 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from xattn_edu.errors import UserError


def _cmd_info(args: argparse.Namespace) -> int:
    from xattn_edu.info import describe

    print(describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="xattn",
        description="Cross-attention, step by step: course tools and a reference translator.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    info = sub.add_parser("info", help="versions, compute device, cache and data locations")
    info.set_defaults(func=_cmd_info)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xattn`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"xattn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xattn {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
