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
from collections.abc import Sequence

from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.elastic.rendezvous.api import RendezvousError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from advkit.distributed.world import DistributedError

log = logging.getLogger("advkit.distributed")

#: Seconds the launcher gives workers to checkpoint after SIGTERM/SIGINT before killing them.
SHUTDOWN_SECONDS = 60


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for the local rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_nproc(nproc: int) -> None:
    """Refuse nonsense, warn about more workers than cores (they would fight for them)."""
    if nproc < 1:
        raise DistributedError(f"--nproc must be >= 1 workers, got {nproc}")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores and nproc > cores:
        log.warning(
            "--nproc %d is more workers than this machine's %d cores: they will share cores and "
            "run slower than --nproc %d", nproc, cores, cores,
        )  # fmt: skip


def worker_threads(nproc: int) -> int:
    """Intra-op threads per worker: the cores shared out, at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // nproc)


def launch_local(
    argv: Sequence[str], nproc: int, *, max_restarts: int = 0, rdzv_endpoint: str | None = None
) -> int:
    """Run ``python -m advkit <argv>`` on ``nproc`` local workers; returns the exit code.

    A worker that fails is reported in one line (its own message is printed above by it); the
    launcher stops the others, so nothing hangs.
    """
    check_nproc(nproc)
    if max_restarts < 0:
        raise DistributedError(f"--max-restarts must be >= 0, got {max_restarts}")
    os.environ.setdefault("OMP_NUM_THREADS", str(worker_threads(nproc)))
    endpoint = rdzv_endpoint or f"127.0.0.1:{free_port()}"
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"advkit-{uuid.uuid4().hex[:8]}",
        rdzv_backend="c10d", rdzv_endpoint=endpoint, max_restarts=max_restarts,
        monitor_interval=0.2, start_method="spawn", shutdown_timeout=SHUTDOWN_SECONDS,
    )  # fmt: skip
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "advkit", *argv)
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        code = failure.exitcode
        how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
        restarts = f" after {max_restarts} restart(s)" if max_restarts else ""
        print(
            f"advkit: worker {rank} of {nproc} {how}{restarts}; the launcher stopped the others "
            "(the worker's own message is above)",
            file=sys.stderr,
        )
        return code if code > 0 else 1
    except RendezvousError as error:
        raise DistributedError(f"the workers could not meet at {endpoint}: {error}") from None
    return 0
