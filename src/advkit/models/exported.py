"""Models passed in by a Python caller (``advkit.fit``): a code-free copy for a new process.

A module handed to ``fit`` has no factory advkit could call again, so the run folder keeps it
as a ``torch.export`` program (``model.pt2``): its graph and weights, loadable in any process
(and on any machine with the same torch) without the caller's code and without unpickling.
The program is frozen in eval mode: ``eval()`` and ``train(False)`` are harmless, so evaluation
code treats it like any model, and ``train()`` is refused with what to do instead (as torch's
own exported modules refuse it), never silently ignored.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from advkit.errors import UserError

log = logging.getLogger(__name__)

#: ``config.model`` of a run whose model came in as a module: ``python:<module>.<class>``.
IN_PROCESS_PREFIX = "python:"
EXPORT_FILE = "model.pt2"


def in_process_name(model: nn.Module) -> str:
    """The name a run records for a module passed in from Python."""
    kind = type(model)
    return f"{IN_PROCESS_PREFIX}{kind.__module__}.{kind.__qualname__}"


def is_in_process(name: str) -> bool:
    return name.startswith(IN_PROCESS_PREFIX)


class FrozenModelError(UserError, NotImplementedError):
    """A model loaded from its exported graph was asked to train."""


class ExportedModel(nn.Module):
    """A loaded ``torch.export`` program as a module: inputs in [0, 1] -> logits, eval mode."""

    def __init__(self, program: nn.Module) -> None:
        super().__init__()
        self.program = program
        self.training = False

    def train(self, mode: bool = True) -> ExportedModel:
        """``train(False)`` is a no-op; ``train()`` is refused: the graph is fixed in eval mode
        (BatchNorm statistics, dropout) and cannot be trained."""
        if mode:
            raise FrozenModelError(
                f"this model was loaded from its exported graph ({EXPORT_FILE}), which is frozen "
                "in eval mode and cannot train: to train further, build your module, load the "
                "run's model.safetensors into it (advkit.training.checkpoint.load_weights; its "
                "keys are the module's under net.) and pass it to advkit.fit"
            )
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.program(x)


def export_model(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> str | None:
    """Write ``model`` (in eval mode, any batch size) to ``path``; the reason when it cannot be.

    Export traces the forward once; models with data-dependent Python control flow cannot be
    exported, which costs only the code-free copy (the weights are saved regardless).
    """
    was_training = model.training
    model.eval()
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    example = torch.rand(2, *input_shape, device=device)
    try:
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
        torch.export.save(program, path)
    except Exception as exc:  # export's failures are many and model-specific
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log.warning(
            "could not export the model to %s (%s): advkit.load_model cannot rebuild it in a new "
            "process; rebuild the module yourself and load %s into it",
            path.name, reason, "model.safetensors",
        )  # fmt: skip
        return reason
    finally:
        model.train(was_training)
    return None


def load_exported(path: Path) -> ExportedModel:
    """The exported program at ``path`` as a module (no code of the original run needed)."""
    return ExportedModel(torch.export.load(path).module())
