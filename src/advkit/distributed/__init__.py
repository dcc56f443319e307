"""The distributed seam: one small package the training loop and evaluation call.

``World`` holds rank and size and the collectives; ``init_world`` joins the process group that
torch's elastic launcher describes (or the trivial world of one process); ``launch`` starts N
local workers through ``torch.distributed.run``'s launcher, used as a library.
"""

from advkit.distributed.world import (
    BACKENDS,
    DistributedError,
    World,
    close_world,
    init_world,
    pick_backend,
    restarted,
    worker_device,
)

__all__ = [
    "BACKENDS",
    "DistributedError",
    "World",
    "close_world",
    "init_world",
    "pick_backend",
    "restarted",
    "worker_device",
]
