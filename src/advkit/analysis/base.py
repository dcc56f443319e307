"""What every analysis of ``advkit analyze`` shares: its inputs, its output, and the registry.

An analysis is a function ``(AnalysisContext) -> AnalysisResult`` registered in ``ANALYSES`` under
the name it has in ``analysis.json``. It reads the model, a fixed seeded sample of test points and
the run's history from the context, and returns JSON-able numbers, matplotlib figures and a
Markdown section; the runner writes them. An analysis that can draw several runs side by side
registers ``compare=`` (``dict[label, AnalysisResult] -> dict[stem, Figure]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

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

    @property
    def device(self) -> torch.device:
        return self.inputs.device

    def option(self, name: str, default: Any) -> Any:
        """``options[name]`` converted to the type of ``default``, else ``default``."""
        if name not in self.options:
            return default
        value = self.options[name]
        return type(default)(value) if default is not None else value

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


Analysis = Callable[[AnalysisContext], AnalysisResult]

#: name -> analysis. Metadata: ``description`` (one line, for --help and the report) and
#: optionally ``compare`` (runs side by side) and ``needs_history`` (True: only runs with metrics).
ANALYSES: Registry[Analysis] = Registry("analysis")
