"""Deterministic certificates for small networks: interval bound propagation (IBP).

``certify_intervals(model, inputs, labels, eps)`` gives verified accuracy under an L-inf budget;
``interval_bounds`` and ``margin_lower_bounds`` bound a model's logits and margins over a box and
are differentiable, for IBP training (``advkit train --method ibp``);
``crown_ibp_margin_lower_bounds`` tightens the margins of chain networks (CROWN-IBP). Bounds are
written on torch itself over the model's torch.fx graph (auto_LiRPA's releases require
torch < 1.13).
"""

from advkit.bounds.certify import BOUNDS, IntervalCertificate, certify_intervals
from advkit.bounds.crown import crown_ibp_margin_lower_bounds
from advkit.bounds.graph import (
    UnsupportedLayerError,
    UntraceableModelError,
    interval_bounds,
    margin_lower_bounds,
)
from advkit.bounds.interval import Interval
from advkit.bounds.stats import recording_batch_stats

__all__ = [
    "BOUNDS",
    "Interval",
    "IntervalCertificate",
    "UnsupportedLayerError",
    "UntraceableModelError",
    "certify_intervals",
    "crown_ibp_margin_lower_bounds",
    "interval_bounds",
    "margin_lower_bounds",
    "recording_batch_stats",
]
