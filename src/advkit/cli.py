"""Command-line entry point: parse, then call the library. No training logic lives here.

advkit train --dataset fashion-mnist --method pgd --eps 0.1 --epochs 10 --out runs/pgd
advkit eval runs/pgd --suite paper
advkit demo
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from advkit import __version__
from advkit.commands.workers import launch, wants_launch
from advkit.distributed.world import current_rank

#: modules under advkit.commands, each with ``add_parser(subparsers)``; order = help order.
COMMAND_MODULES = ("train", "eval", "demo", "info")

#: errors a user can fix: shown as one line, never as a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, KeyError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="advkit",
        description="Adversarial training and honest robustness evaluation for image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"advkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"advkit.commands.{name}").add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet_worker = current_rank() != 0 and not args.verbose  # only rank 0 logs progress
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if quiet_worker else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        if wants_launch(args):
            return launch(args, sys.argv[1:] if argv is None else argv)
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("advkit: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"advkit {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
