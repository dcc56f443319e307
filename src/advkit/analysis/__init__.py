"""Analyses of what (adversarial) training did to a model: ``advkit analyze RUN [RUN ...]``.

Each analysis is one module registering one function in :data:`ANALYSES`
(:mod:`advkit.analysis.base`); :mod:`advkit.analysis.runner` runs them on a run folder and
:mod:`advkit.analysis.report` writes what they found.
"""

from advkit.analysis import (  # noqa: F401 (registration)
    grad_alignment,
    input_gradients,
    large_eps,
    layer_criticality,
    loss_landscape,
    overfitting,
    per_class,
)
from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult, AnalysisSkipped

__all__ = ["ANALYSES", "AnalysisContext", "AnalysisResult", "AnalysisSkipped"]
