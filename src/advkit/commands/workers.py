"""The worker options of ``train`` and ``eval`` and the hand-over to torch's elastic launcher.

``advkit train ... --nproc N`` re-runs the same command line minus the launcher's own options on
N workers started by ``torch.distributed.launcher`` (what torchrun runs); under torchrun, or in
one of those workers, the command runs as it is and joins the process group from the
environment. ``--nnodes M --rdzv-endpoint HOST:PORT`` makes this machine one of M nodes.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from advkit import runs
from advkit.distributed.launch import launch_local

#: flag -> takes a value; the launcher's options, removed from what the workers are given.
LAUNCHER_FLAGS = {"--nproc": True, "--nnodes": True, "--rdzv-endpoint": True,
                  "--max-restarts": True}  # fmt: skip


def add_worker_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("workers (torch.distributed)")
    group.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="worker processes on this machine, started by torch's elastic "
        "launcher (default 1: no process group; under torchrun, leave it out)",
    )
    group.add_argument(
        "--nnodes",
        type=int,
        default=1,
        metavar="M",
        help="machines taking part, each running this command with the same "
        "--rdzv-endpoint (default 1)",
    )
    group.add_argument(
        "--rdzv-endpoint",
        metavar="HOST:PORT",
        help="c10d rendezvous of the nodes (default: a free port on 127.0.0.1)",
    )
    group.add_argument("--max-restarts", type=int, default=0, metavar="K",
                       help="restart all workers up to K times when one dies; the run resumes "
                       "from its last checkpoint (--checkpoint-every; default 0)")  # fmt: skip


def inside_workers() -> bool:
    """True in a process the launcher started (or under torchrun)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or "WORLD_SIZE" in os.environ


def wants_launch(args: argparse.Namespace) -> bool:
    return (getattr(args, "nproc", 1) > 1 or getattr(args, "nnodes", 1) > 1) and not (
        inside_workers()
    )


def worker_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` without the launcher's options (``--flag value`` and ``--flag=value``)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCHER_FLAGS:
            skip = "=" not in arg and LAUNCHER_FLAGS[name]
            continue
        kept.append(arg)
    return kept


def launch(args: argparse.Namespace, argv: Sequence[str]) -> int:
    """Run the command on ``args.nproc`` workers through the elastic launcher, after the
    command's own checks of what would fail on every worker (``args.precheck``, which returns
    the run folder of a training)."""
    folder = None
    if getattr(args, "precheck", None) is not None:
        folder = args.precheck(args, args.nproc * args.nnodes)
    on_restart, on_stop = next_steps(args.command, folder)
    return launch_local(
        worker_argv(argv), args.nproc, nnodes=args.nnodes, rdzv_endpoint=args.rdzv_endpoint,
        max_restarts=args.max_restarts, on_restart=on_restart, on_stop=on_stop,
    )  # fmt: skip


def next_steps(command: str, folder: Path | None) -> tuple[Callable[[], str], Callable[[], str]]:
    """What the user reads after a worker failed, as it stands then: where the restarted
    workers go on from, and how to go on once the launcher has stopped them."""
    if command in ("eval", "certify"):
        what = "evaluation" if command == "eval" else "certification"
        resumes = f"the {what} resumes from its saved progress"
        return (lambda: f"restarting all workers: {resumes}",
                lambda: f"run the same command again: {resumes}")  # fmt: skip
    if command != "train" or folder is None:
        return (lambda: "restarting all workers", lambda: "run the same command again")
    checkpoint = folder / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT

    def on_restart() -> str:
        if checkpoint.is_file():
            return "restarting all workers from the run's last checkpoint"
        return "restarting all workers from the start (the run has no checkpoint yet)"

    def on_stop() -> str:
        if checkpoint.is_file():
            return f"continue from its last checkpoint with `advkit train --resume {folder}`"
        return "the run has no checkpoint yet: run the same command again"

    return on_restart, on_stop
