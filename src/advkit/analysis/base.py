"""What every analysis of ``advkit analyze`` shares: its inputs, its output, and the registry.

An analysis is a function ``(AnalysisContext) -> AnalysisResult`` registered in ``ANALYSES`` under
the name it has in ``analysis.json``. It reads the model, a fixed seeded sample of test points and
the run's history from the context, and returns JSON-able numbers, matplotlib figures and a
Markdown section; the runner writes them. An analysis that can draw several runs side by side
registers ``compare=`` (``dict[label, AnalysisResult] -> dict[stem, Figure]``).

An analysis that takes ``--set NAME.KEY=VALUE`` options declares them as ``options={key:
default}``: the runner then refuses unknown keys, converts values to the default's type and
records the resolved options in analysis.json. One that cannot run on what it was given (no
history, an architecture it cannot rebuild) raises :class:`AnalysisSkipped` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advkit.config_values import coerce_value
from advkit.registry import Registry


@dataclass
class AnalysisContext:
    """One model under analysis.

    Attributes:
        model: eval mode, inputs in [0, 1] (normalization inside), on ``device``.
        inputs: (n, C, H, W) float test points in [0, 1], a fixed seeded sample, on ``device``.
        labels: (n,) int64, on ``device``.
        eps, norm: the run's threat model (pixel units).
        num_classes, class_names: the model's classes (names may be None).
        history: the run's metrics.jsonl records, one per epoch (empty for a bare model).
        meta: the run's model.json (empty for a bare model).
        run_dir: the run folder, or None for a model that has none.
        seed: seeds every random draw, so the same seed gives the same numbers.
        options: ``--set NAME=VALUE`` overrides by analysis-specific name (e.g. ``examples``).
        rebuild: a fresh, untrained copy of the model's architecture (for re-randomization), or
            None when the model cannot be rebuilt (e.g. an exported program).
        batch_size: images per forward pass; analyses chunk their work to it.
    """

    model: nn.Module
    inputs: Tensor
    labels: Tensor
    eps: float
    norm: str
    num_classes: int
    class_names: list[str] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    rebuild: Callable[[], nn.Module] | None = None
    batch_size: int = 512

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def option(self, name: str, default: Any) -> Any:
        """``options[name]`` converted to the type of ``default``, else ``default``.

        Strings convert as on the command line (``"no"`` is False, ``"8/255"`` a float);
        ConfigError naming the option when they cannot."""
        if name not in self.options:
            return default
        value = self.options[name]
        if default is None:
            return value
        return coerce_value(f"option {name}", type(default), value)

    def generator(self, purpose: int = 0) -> torch.Generator:
        """A generator on the CPU seeded by (seed, purpose): one stream per use, reproducible."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + purpose)


@dataclass
class AnalysisResult:
    """What an analysis found: ``summary`` -> analysis.json[name], ``figures`` -> PNGs named
    ``<name>-<stem>.png``, ``markdown`` -> its section of analysis.md (no heading: the runner
    adds one)."""

    summary: dict[str, Any]
    figures: dict[str, Any] = field(default_factory=dict)
    markdown: str = ""
    #: What ``compare=`` draws runs side by side from (tensors, arrays); never written.
    data: dict[str, Any] = field(default_factory=dict)


class AnalysisSkipped(Exception):
    """Raised by an analysis that cannot run on this model or run; the message says why."""


Analysis = Callable[[AnalysisContext], AnalysisResult]

#: name -> analysis. Metadata: ``description`` (one line, for --help and the report) and
#: optionally ``compare`` (runs side by side), ``needs_history`` (True: only runs with metrics),
#: ``needs_rebuild`` (True: only models ``rebuild`` can build), ``options`` ({key: default}) and
#: ``headline`` (dotted summary keys printed by the CLI; default: the first numbers).
ANALYSES: Registry[Analysis] = Registry("analysis")
