"""A worker whose peer is gone: recognised as that, never as a bug in advkit.

When one of several workers dies (killed, out of memory, its machine lost), the others fail in
their next collective with the backend's error: gloo's "Connection reset by peer" or "Connection
closed by peer" (often wrapped in DDP's "Got the following error when running the callback"),
torch's ``DistBackendError``/``DistNetworkError``/``DistStoreError``, NCCL's aborted
communicator, or a timeout when a peer hangs. That is the environment, not advkit: the CLI
reports it in one line (:func:`peer_loss_line`), and says nothing at all under advkit's own
launcher, which reports the dead worker, its signal and what comes next
(:mod:`advkit.distributed.failures`); the worker then exits with :data:`PEER_LOST_EXIT`.
"""

from __future__ import annotations

import os

import torch.distributed as dist

#: Exit status of a worker that stopped because a peer did (EX_TEMPFAIL: a retry may work).
PEER_LOST_EXIT = 75
#: Set by advkit's launcher in its workers' environment: it reports a lost worker itself.
LAUNCHER_ENV = "ADVKIT_LAUNCHER"

#: What the backends say when the other end of a connection is gone (lower case), and the
#: account each gives in the one line; the first that matches counts.
_SIGNS = (
    ("connection reset by peer", "connection reset by peer"),
    ("connection closed by peer", "connection closed by peer"),
    ("broken pipe", "broken pipe"),
    ("connection refused", "connection refused"),
    ("timed out", "timed out waiting for it"),
    ("communicator was aborted", "the NCCL communicator was aborted"),
    ("read error", "the connection failed"),
    ("write error", "the connection failed"),
)
#: torch's errors of the connections themselves (the store, the sockets).
_NETWORK_ERRORS = tuple(
    getattr(dist, name) for name in ("DistNetworkError", "DistStoreError") if hasattr(dist, name)
)
_BACKEND_ERRORS = tuple(
    getattr(dist, name) for name in ("DistBackendError",) if hasattr(dist, name)
)


def world_size() -> int:
    """The number of workers the launcher started this process among (1 outside one)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def peer_loss(error: BaseException) -> str | None:
    """How the connection to the other workers failed, if that is what ``error`` (or an error
    it was raised from or while handling) is, in a process among several workers; else None."""
    if world_size() <= 1:
        return None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        text = str(current).lower()
        account = next((account for sign, account in _SIGNS if sign in text), None)
        if isinstance(current, _NETWORK_ERRORS):
            return account or "the connection failed"
        from_backend = isinstance(current, _BACKEND_ERRORS) or "gloo" in text or "nccl" in text
        if isinstance(current, RuntimeError) and account and from_backend:
            return account
        current = current.__cause__ or current.__context__
    return None


def peer_loss_line(command: str, account: str) -> str | None:
    """The one line a worker prints on losing its peers, or None under advkit's launcher
    (which says which worker died, how, and what happens next)."""
    if os.environ.get(LAUNCHER_ENV):
        return None
    rank = os.environ.get("RANK", "?")
    return (
        f"advkit {command}: worker {rank} of {world_size()} lost contact with the other workers "
        f"({account}): one of them stopped; the launcher's log says which and why"
    )
