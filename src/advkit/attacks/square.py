"""Square Attack: score-based random search over square-shaped vertex updates.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020 (arXiv:1912.00049). Inputs are in [0, 1] with shape
(N, C, H, W); ``eps`` is in pixel units.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.attacks._mode import attack_mode
from advkit.attacks.apgd import _per_sample_eps, _seeded
from advkit.attacks.losses import cw_margin

#: Query indices (on the paper's 10,000-query scale) after which p is halved again.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_LOSSES = ("margin", "ce")


def square(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float | Tensor,
    norm: str = "linf",
    queries: int = 5000,
    p_init: float = 0.8,
    seed: int | None = None,
    loss: str = "margin",
    targeted: bool = False,
    train_mode: bool = False,
) -> Tensor:
    """Square Attack (L-inf): gradient-free random search on the vertices of the eps-box.

    Andriushchenko et al., ECCV 2020 (arXiv:1912.00049). Norm: "linf" only. Starts from vertical
    stripes of +-eps; each query sets a random square window of every still-unbroken sample to a
    random vertex (+-eps per channel) and keeps it if the loss decreases. The window covers a
    fraction p of the image, halved on the paper's schedule (rescaled from 10,000 queries to
    ``queries``). Only forward passes, under ``torch.no_grad``; each sample stops once fooled.

    Args:
        model: returns logits for inputs in [0, 1].
        inputs: (N, C, H, W) in [0, 1]. labels: (N,) true labels, or target labels if targeted.
        eps: L-inf radius in pixel units (e.g. 8/255), a float or a per-sample (N,) tensor.
        queries: at most this many forward passes per sample, the initial one included.
        p_init: initial fraction of pixels in the square window.
        seed: seeds the random search (the global RNG is left untouched); None uses the global RNG.
        loss: "margin" (z_y - max_{j != y} z_j, minimized) or "ce" (cross-entropy, maximized).
        targeted: move towards the class ``labels`` instead.
        train_mode: run the model in train mode during the attack.

    Returns:
        adversarial inputs, same shape as ``inputs``, within the budget and in [0, 1]: for each
        sample the first fooling point found, else the lowest-loss point.
    """
    if norm != "linf":
        raise ValueError(f"square supports norm='linf', got norm={norm!r}")
    if loss not in _LOSSES:
        raise ValueError(f"square supports loss in {_LOSSES}, got loss={loss!r}")
    if queries < 1:
        raise ValueError(f"queries must be >= 1, got {queries}")
    if not 0.0 < p_init <= 1.0:
        raise ValueError(f"p_init must be in (0, 1], got {p_init}")
    if inputs.dim() != 4 or labels.shape != inputs.shape[:1]:
        raise ValueError(
            f"square expects inputs (N, C, H, W) and labels (N,), got {tuple(inputs.shape)} and "
            f"{tuple(labels.shape)}"
        )
    inputs = inputs.detach()
    n, channels, height, width = inputs.shape
    eps_all = _per_sample_eps(eps, inputs).view(-1, 1, 1, 1)
    lower = torch.maximum(inputs - eps_all, torch.zeros_like(inputs))
    upper = torch.minimum(inputs + eps_all, torch.ones_like(inputs))

    def objective(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """(loss to minimize, fooled) for a batch of candidate points."""
        logits = model(x).float()
        if loss == "margin":
            value = cw_margin(logits, y) if targeted else -cw_margin(logits, y)
        else:
            cross_entropy = F.cross_entropy(logits, y, reduction="none")
            value = cross_entropy if targeted else -cross_entropy
        predictions = logits.argmax(dim=1)
        return value, (predictions == y) if targeted else (predictions != y)

    with attack_mode(model, train=train_mode), _seeded(seed, inputs.device), torch.no_grad():
        stripes = torch.randint(0, 2, (n, channels, 1, width), device=inputs.device)
        best = (inputs + eps_all * (2.0 * stripes - 1.0)).clamp_(lower, upper)
        best_loss, fooled = objective(best, labels)
        rows = torch.arange(height, device=inputs.device)
        cols = torch.arange(width, device=inputs.device)
        for query in range(1, queries):
            remaining = (~fooled).nonzero().squeeze(1)
            if len(remaining) == 0:
                break
            x_best, lo, hi = (t.index_select(0, remaining) for t in (best, lower, upper))
            x, y = inputs.index_select(0, remaining), labels.index_select(0, remaining)
            size = _window_size(query, queries, p_init, height, width)
            count = len(remaining)
            top = torch.randint(0, height - size + 1, (count, 1), device=inputs.device)
            left = torch.randint(0, width - size + 1, (count, 1), device=inputs.device)
            in_rows = (rows >= top) & (rows < top + size)
            in_cols = (cols >= left) & (cols < left + size)
            window = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (count, 1, H, W)
            vertex = _random_vertex(x_best, x, eps_all.index_select(0, remaining), window, lo, hi)
            candidate = torch.where(window, vertex, x_best)
            candidate_loss, candidate_fooled = objective(candidate, y)
            current_loss = best_loss.index_select(0, remaining)
            accept = (candidate_loss < current_loss) | candidate_fooled
            best.index_copy_(0, remaining, torch.where(accept.view(-1, 1, 1, 1), candidate, x_best))
            best_loss.index_copy_(0, remaining, torch.where(accept, candidate_loss, current_loss))
            fooled.index_copy_(0, remaining, candidate_fooled)
    return best


def _window_size(query: int, queries: int, p_init: float, height: int, width: int) -> int:
    """Side of the square window at ``query``: sqrt(p * H * W), p halved on the paper's schedule."""
    scaled = int(query / queries * 10000)
    p = p_init / 2 ** sum(scaled > point for point in _HALVINGS)
    return min(max(round(math.sqrt(p * height * width)), 1), height, width)


def _random_vertex(
    x_best: Tensor, inputs: Tensor, eps: Tensor, window: Tensor, lower: Tensor, upper: Tensor
) -> Tensor:
    """Points inputs +- eps (one random sign per sample and channel), clipped to the box.

    Where the window would stay unchanged, the signs are redrawn uniformly among the other
    patterns, as the reference implementation's rejection loop does.
    """
    count, channels = inputs.shape[:2]
    device = inputs.device
    signs = torch.randint(0, 2, (count, channels, 1, 1), device=device) * 2.0 - 1.0
    vertex = (inputs + eps * signs).clamp_(lower, upper)
    stuck = (((vertex - x_best).abs() < 1e-7) | ~window).flatten(1).all(dim=1)
    if channels <= 16:
        code = torch.randint(1, 2**channels, (count, 1, 1, 1), device=device)
        bits = (code >> torch.arange(channels, device=device).view(1, -1, 1, 1)) & 1
    else:
        bits = torch.randint(0, 2, (count, channels, 1, 1), device=device)
        bits[:, 0] |= (bits.sum(dim=1) == 0).long()
    flipped = signs * (1.0 - 2.0 * bits)
    signs = torch.where(stuck.view(-1, 1, 1, 1), flipped, signs)
    return (inputs + eps * signs).clamp_(lower, upper)
