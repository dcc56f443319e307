"""What a model's outputs say about the model, whoever asks: training before its first step,
evaluation's sanity checks."""

from __future__ import annotations

import torch
from torch import Tensor

#: Tolerance on each row's sum for outputs to count as probabilities.
PROBABILITY_SUM_TOLERANCE = 1e-3

PROBABILITY_ADVICE = (
    "the model outputs look like probabilities (non-negative, each row sums to 1), not logits"
)


def looks_like_probabilities(outputs: Tensor) -> bool:
    """Every output non-negative and every row summing to 1: a softmax where logits belong.

    Cross-entropy on such outputs applies a second softmax, whose gradients nearly vanish: the
    model trains to chance, and attacks on it overstate robustness."""
    outputs = outputs.detach().float()
    sums = outputs.sum(dim=1)
    return bool((outputs >= 0).all()) and bool(
        torch.allclose(sums, torch.ones_like(sums), atol=PROBABILITY_SUM_TOLERANCE)
    )
