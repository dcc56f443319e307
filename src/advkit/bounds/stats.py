"""The clean batch's BatchNorm statistics, for bounds on a model in training mode.

Gowal et al. (2018) bound a network whose BatchNorm layers, while training, normalize with the
statistics of the nominal (clean) batch: the bounds are then those of the very function the
clean loss trains, an affine map per channel. :func:`recording_batch_stats` records them from a
clean forward (through a DDP wrapper too: the hooks sit on the wrapped modules).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor, nn

from advkit.bounds.interval import batch_stats


@contextmanager
def recording_batch_stats(model: nn.Module) -> Iterator[dict[str, tuple[Tensor, Tensor]]]:
    """Within the block, each forward of a BatchNorm layer of ``model`` in training mode stores
    its input's per-channel (mean, biased variance) under the layer's qualified name (the last
    forward wins); the dict is what ``interval_bounds(..., batch_stats=)`` takes."""
    stats: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):

            def hook(module: nn.Module, args: tuple, name: str = name) -> None:
                if module.training:
                    stats[name] = batch_stats(args[0])

            handles.append(module.register_forward_pre_hook(hook))
    try:
        yield stats
    finally:
        for handle in handles:
            handle.remove()
