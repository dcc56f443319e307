"""Command-line entry point: parse, then call the library. No training logic lives here.

advkit train --dataset fashion-mnist --method pgd --eps 0.1 --epochs 10 --out runs/pgd
advkit eval runs/pgd --suite paper
advkit demo

A failure the user can fix (a bad option, a corrupt file, a missing GPU: ``advkit.errors``'s
``UserError``, an OS error such as a full disk, or a library ``ValueError``) ends in one line,
``advkit <command>: error: ...`` and exit status 2; ``-v`` shows its traceback first. A worker
whose peer died (its collective failed: :mod:`advkit.distributed.peers`) exits with status 75,
in one line or, under advkit's launcher, which reports the dead worker, silently. Any other
exception is a bug: one sentence says so, then the traceback follows.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from advkit import __version__
from advkit.commands.workers import launch, wants_launch
from advkit.distributed.peers import PEER_LOST_EXIT, peer_loss, peer_loss_line
from advkit.distributed.world import current_rank
from advkit.errors import UserError
from advkit.files import write_error

#: modules under advkit.commands, each with ``add_parser(subparsers)``; order = help order.
COMMAND_MODULES = ("train", "eval", "certify", "compare", "analyze", "demo", "info")

#: errors a user can fix: shown as one line, never as a traceback (unless -v).
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, OSError, ValueError, MemoryError)
#: OS errors that only a write raises: their message says the free space and what to do.
WRITE_ONLY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (the usage itself is in ``--help``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="advkit",
        description="Adversarial training and honest robustness evaluation for image classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"advkit {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log debug messages; show tracebacks"
    )
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
    except Exception as error:
        where = f"advkit {args.command}"
        lost = peer_loss(error)
        if lost is not None:  # another worker died: its launcher reports how
            if args.verbose:
                traceback.print_exception(error, file=sys.stderr)
            line = peer_loss_line(args.command, lost)
            if line is not None:
                print(line, file=sys.stderr)
            return PEER_LOST_EXIT
        if not _is_user_error(error):
            print(
                f"{where}: internal error, a bug in advkit (please report it with this "
                f"traceback): {type(error).__name__}: {_first_line(error)}",
                file=sys.stderr,
            )
            raise
        if args.verbose:
            traceback.print_exception(error, file=sys.stderr)
        print(f"{where}: error: {user_message(error)}", file=sys.stderr)
        return 2


def user_message(error: BaseException) -> str:
    """One line saying what went wrong, for an error in ``USER_ERRORS``."""
    if isinstance(error, MemoryError) or _is_out_of_memory(error):
        return "out of memory: lower --batch-size (or use a smaller model or fewer examples)"
    if isinstance(error, OSError) and not isinstance(error, UserError) and error.strerror:
        if error.filename and error.errno in WRITE_ONLY_ERRNOS:  # only a write fails so
            return str(write_error(error.filename, error))
        where = f": {error.filename}" if error.filename else ""
        return f"{error.strerror}{where}"
    if isinstance(error, UserError):
        return " ".join(str(error).split())
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[0] + (" (-v shows the rest)" if len(lines) > 1 else "")


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, getattr(torch, "OutOfMemoryError", ()))


def _is_user_error(error: BaseException) -> bool:
    return isinstance(error, USER_ERRORS) or _is_out_of_memory(error)


if __name__ == "__main__":
    sys.exit(main())
