"""Analyses of what (adversarial) training did to a model: ``advkit analyze RUN [RUN ...]``.

Each analysis is one module registering one function in :data:`ANALYSES`
(:mod:`advkit.analysis.base`).
"""

from advkit.analysis import grad_alignment, layer_criticality, overfitting, per_class
from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult

__all__ = ["ANALYSES", "AnalysisContext", "AnalysisResult"]

del grad_alignment, layer_criticality, overfitting, per_class  # registered on import
