"""``advkit ... --nproc N``: N local workers through torch's elastic launcher, used as a library.

The launcher (``torch.distributed.launcher.elastic_launch``, what ``torchrun`` runs) starts the
workers with the ``env://`` variables, meets them at a c10d rendezvous on this host, watches them
and, with ``max_restarts`` > 0, restarts all of them when one dies; the run then resumes from its
last checkpoint. Each worker runs ``python -m advkit`` with the same arguments minus ``--nproc``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from torch.distributed import TCPStore
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous.api import RendezvousError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from advkit.distributed.failures import cause, failure_line, reporting_restarts
from advkit.distributed.peers import LAUNCHER_ENV
from advkit.distributed.world import DistributedError

log = logging.getLogger("advkit.distributed")

#: Seconds the launcher gives workers to checkpoint after SIGTERM/SIGINT before killing them.
SHUTDOWN_SECONDS = 60
#: Seconds to wait for an answer from a busy local port that may be another node's rendezvous.
PROBE_SECONDS = 10
#: Seconds the nodes wait for each other at the rendezvous (env ADVKIT_RDZV_TIMEOUT).
RDZV_TIMEOUT = int(os.environ.get("ADVKIT_RDZV_TIMEOUT", "300"))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for the local rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _cores() -> int:
    """The cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_nproc(nproc: int) -> None:
    """Refuse nonsense, warn about more workers than cores (they would fight for them)."""
    if nproc < 1:
        raise DistributedError(f"--nproc must be >= 1 workers, got {nproc}")
    cores = _cores()
    if nproc > cores:
        log.warning(
            "--nproc %d is more workers than this machine's %d cores: they will share cores and "
            "run slower than --nproc %d", nproc, cores, cores,
        )  # fmt: skip


def worker_threads(nproc: int) -> int:
    """Intra-op threads per worker: the cores shared out, at least one."""
    return max(1, _cores() // nproc)


def launch_local(
    argv: Sequence[str],
    nproc: int,
    *,
    nnodes: int = 1,
    rdzv_endpoint: str | None = None,
    max_restarts: int = 0,
    rdzv_timeout: int = RDZV_TIMEOUT,
    on_restart: Callable[[], str] = lambda: "restarting all workers",
    on_stop: Callable[[], str] = lambda: "run the same command again",
) -> int:
    """Run ``python -m advkit <argv>`` on ``nproc`` workers of this node; returns the exit code.

    With ``nnodes`` > 1 every node runs this with the same ``rdzv_endpoint`` and they meet there
    (c10d rendezvous). A worker that fails is reported in one line: which, how (a signal, or its
    own message printed above by it), and what happens next: ``on_restart()`` (where the
    restarted workers go on from) while restarts are left, else ``on_stop()`` (how to go on);
    the launcher stops the others, so nothing hangs, and the workers that only lost their peer
    say nothing (:mod:`advkit.distributed.peers`).
    """
    check_nproc(nproc)
    if max_restarts < 0:
        raise DistributedError(f"--max-restarts must be >= 0, got {max_restarts}")
    if nnodes < 1:
        raise DistributedError(f"--nnodes must be >= 1 machines, got {nnodes}")
    if nnodes > 1 and not rdzv_endpoint:
        raise DistributedError(
            "--nnodes > 1 needs --rdzv-endpoint HOST:PORT, the same on every node (the first "
            "node's address and a free port)"
        )
    os.environ.setdefault("OMP_NUM_THREADS", str(worker_threads(nproc)))
    if not log.isEnabledFor(logging.DEBUG):  # a failure is summarized in one line below
        _quiet_torch_elastic()
    endpoint = rdzv_endpoint or f"127.0.0.1:{free_port()}"
    check_rendezvous(endpoint, nnodes, rdzv_timeout)
    config = LaunchConfig(
        min_nodes=nnodes, max_nodes=nnodes, nproc_per_node=nproc,
        run_id=os.environ.get("ADVKIT_RUN_ID") or f"advkit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint=endpoint, rdzv_timeout=rdzv_timeout,
        rdzv_configs={"join_timeout": rdzv_timeout}, max_restarts=max_restarts,
        monitor_interval=0.2, start_method="spawn", shutdown_timeout=SHUTDOWN_SECONDS,
    )  # fmt: skip
    workers = nproc * nnodes

    def restarting(failures: Mapping[int, Any], restart: int, most: int) -> None:
        print(failure_line(failures, workers, f"{on_restart()} (restart {restart} of {most})"),
              file=sys.stderr, flush=True)  # fmt: skip

    try:
        with reporting_restarts(restarting), _launcher_env():  # workers leave the report here
            elastic_launch(config, sys.executable)("-u", "-m", "advkit", *argv)
    except ChildFailedError as failed:
        restarts = f" after {max_restarts} restart(s)" if max_restarts else ""
        what_next = f"the launcher stopped the others{restarts}; {on_stop()}"
        print(failure_line(failed.failures, workers, what_next), file=sys.stderr)
        code = cause(failed.failures)[1].exitcode
        return code if code > 0 else 1
    except SignalException as stop:
        # The launcher passed SIGTERM/SIGINT on; the workers checkpointed and said so.
        return 128 + int(stop.sigval)
    except RendezvousError as error:
        raise DistributedError(
            f"the nodes could not meet at the rendezvous {endpoint} ({type(error).__name__}: "
            f"{error}); check that every node was given the same --rdzv-endpoint, that the "
            "host is reachable and that the port is free on it"
        ) from None
    return 0


@contextmanager
def _launcher_env() -> Iterator[None]:
    """$ADVKIT_LAUNCHER set for the workers started within (they inherit the environment)."""
    previous = os.environ.get(LAUNCHER_ENV)
    os.environ[LAUNCHER_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(LAUNCHER_ENV, None)
        else:
            os.environ[LAUNCHER_ENV] = previous


def _quiet_torch_elastic() -> None:
    """torch's launcher logs each failure in several lines; advkit says it in one."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)


def check_rendezvous(endpoint: str, nnodes: int, timeout: float) -> None:
    """Fail in one line, before any worker starts, where torch's launcher would hang or
    print a traceback: a malformed endpoint, a local port taken by something else, a remote
    rendezvous host that does not answer within ``timeout`` seconds."""
    host, _, port_text = endpoint.rpartition(":")
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise DistributedError(
            f"--rdzv-endpoint must be HOST:PORT, e.g. 10.0.0.1:29400, got {endpoint!r}"
        )
    port = int(port_text)
    if _is_local(host):
        if _can_bind(host, port):
            return  # this node will host the rendezvous
        if nnodes == 1 or not _store_answers(host, port, PROBE_SECONDS):
            raise DistributedError(
                f"port {port} on {host} is in use by another program: choose a free port in "
                "--rdzv-endpoint (or leave it out on one machine)"
            )
    elif not _store_answers(host, port, timeout):
        raise DistributedError(
            f"no rendezvous answered at {endpoint} within {timeout:g} s: start the node that "
            "hosts it first, and check the address, the port and the firewall"
        )


def _is_local(host: str) -> bool:
    """Whether ``host`` is an address of this machine (a socket can be bound to it)."""
    return _can_bind(host, 0)


def _can_bind(host: str, port: int) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, port))
        return True
    except OSError:
        return False


def _store_answers(host: str, port: int, seconds: float) -> bool:
    """Whether a torch TCPStore (the c10d rendezvous) answers at host:port."""
    try:
        TCPStore(host, port, is_master=False, timeout=timedelta(seconds=seconds))
    except (RuntimeError, OSError, ValueError):  # DistStoreError / DistNetworkError
        return False
    return True
