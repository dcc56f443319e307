"""What advkit's launcher says when a worker fails: which worker, how, and what happens next.

torch's elastic launcher restarts the workers (``--max-restarts``) without a word, and its own
account of a failure names the first worker to fail in time, often one that only lost its peer.
Here the launcher's agent reports each failure as it sees it (:func:`reporting_restarts`), and
the cause is picked among the failed workers (:func:`cause`): one killed by a signal the launcher
did not send, else one that exited on its own error, before those stopped by the launcher and
those that stopped because a peer did (:data:`advkit.distributed.peers.PEER_LOST_EXIT`).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from advkit.distributed.peers import PEER_LOST_EXIT

#: Exits that follow from the launcher stopping a worker (SIGTERM/SIGINT, or the worker's
#: own checkpoint-and-stop on them): consequences, not causes.
_STOPPED = {-signal.SIGTERM, -signal.SIGINT, 128 + signal.SIGTERM, 130}


def describe(exitcode: int) -> str:
    """``was killed by signal 9 (SIGKILL)``, ``exited with code 2 (its message is above)``."""
    if exitcode < 0:
        try:
            name = f" ({signal.Signals(-exitcode).name})"
        except ValueError:
            name = ""
        return f"was killed by signal {-exitcode}{name}"
    if exitcode == PEER_LOST_EXIT:
        return "lost contact with the other workers"
    return f"exited with code {exitcode} (its message is above)"


def cause(failures: Mapping[int, Any]) -> tuple[int, Any]:
    """The (global rank, ProcessFailure) that most likely caused the others among ``failures``."""

    def likelihood(item: tuple[int, Any]) -> tuple[int, int, int]:
        rank, failure = item
        code = failure.exitcode
        if code == PEER_LOST_EXIT:
            order = 3
        elif code in _STOPPED:
            order = 2
        else:
            order = 0 if code < 0 else 1
        return order, failure.timestamp, rank

    return min(failures.items(), key=likelihood)


def failure_line(failures: Mapping[int, Any], workers: int, what_next: str) -> str:
    """``advkit: worker 1 of 2 was killed by signal 9 (SIGKILL); <what_next>``."""
    rank, failure = cause(failures)
    return f"advkit: worker {rank} of {workers} {describe(failure.exitcode)}; {what_next}"


@contextmanager
def reporting_restarts(report: Callable[[Mapping[int, Any], int, int], None]) -> Iterator[None]:
    """Within the block, torch's launcher calls ``report(failures, restart, max_restarts)`` when
    it sees failed workers it is about to restart (``restart`` counts from 1).

    The launcher builds its agent, ``LocalElasticAgent``, inside ``launch_agent``; a subclass
    that watches ``_monitor_workers`` (the agents' documented extension point) stands in for it
    during the launch. Without those names (another torch), restarts go unreported."""
    from torch.distributed.launcher import api

    base = getattr(api, "LocalElasticAgent", None)
    if base is None or not hasattr(base, "_monitor_workers"):
        yield
        return

    class ReportingAgent(base):  # type: ignore[misc, valid-type]
        def _monitor_workers(self, worker_group: Any) -> Any:
            result = super()._monitor_workers(worker_group)
            left = getattr(self, "_remaining_restarts", 0)
            if result.is_failed() and result.failures and left > 0:
                most = worker_group.spec.max_restarts
                report(result.failures, most - left + 1, most)
            return result

    api.LocalElasticAgent = ReportingAgent
    try:
        yield
    finally:
        api.LocalElasticAgent = base
