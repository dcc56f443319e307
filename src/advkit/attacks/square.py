"""Square Attack: score-based random search over square-shaped vertex updates.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box adversarial
attack via random search", ECCV 2020 (arXiv:1912.00049), for L-inf and L2. Inputs are in [0, 1]
with shape (N, C, H, W); ``eps`` is in pixel units.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.attacks._entry import public_attack
from advkit.attacks._mode import attack_mode
from advkit.attacks.apgd import _per_sample_eps, _seeded
from advkit.attacks.losses import cw_margin

#: Query indices (on the paper's 10,000-query scale) after which p is halved again.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_LOSSES = ("margin", "ce")
_NORMS = ("linf", "l2")


@public_attack("square")
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
    """Square Attack: gradient-free random search for an adversarial point in the eps-ball.

    Andriushchenko et al., ECCV 2020 (arXiv:1912.00049). Only forward passes, under
    ``torch.no_grad``; each sample stops once fooled, and a candidate is kept only if it lowers the
    loss. The square window covers a fraction p of the image, halved on the paper's schedule
    (rescaled from 10,000 queries to ``queries``).

    - "linf": starts from vertical stripes of +-eps; each query sets a random square window of
      every still-unbroken sample to a random vertex (+-eps per channel).
    - "l2": starts from a grid of +- "pseudo-Gaussian" blocks scaled to norm eps; each query moves
      the perturbation's mass from a second random window into the first, as a new signed block
      on top of what the first held, and rescales the whole perturbation to norm eps. The two
      windows are placed at the same spot for all samples of a query, as in the paper's code.

    Args:
        model: returns logits for inputs in [0, 1].
        inputs: (N, C, H, W) in [0, 1]. labels: (N,) true labels, or target labels if targeted.
        eps: radius in pixel units (e.g. 8/255 for L-inf), a float or a per-sample (N,) tensor.
        norm: "linf" or "l2".
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
    if norm not in _NORMS:
        raise ValueError(f"square supports norm in {_NORMS}, got norm={norm!r}")
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
        if norm == "l2":
            return _square_l2(objective, inputs, labels, eps_all, queries, p_init)
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
            _keep_improvements(
                objective(candidate, y), candidate, remaining, best, best_loss, fooled
            )
    return best


def _keep_improvements(
    scored: tuple[Tensor, Tensor],
    candidate: Tensor,
    remaining: Tensor,
    best: Tensor,
    best_loss: Tensor,
    fooled: Tensor,
) -> None:
    """Store each candidate (rows ``remaining`` of the batch) that lowers its sample's loss or
    fools the model; ``scored`` is the objective's (loss, fooled) for the candidates."""
    candidate_loss, candidate_fooled = scored
    current_loss = best_loss.index_select(0, remaining)
    accept = (candidate_loss < current_loss) | candidate_fooled
    kept = torch.where(accept.view(-1, 1, 1, 1), candidate, best.index_select(0, remaining))
    best.index_copy_(0, remaining, kept)
    best_loss.index_copy_(0, remaining, torch.where(accept, candidate_loss, current_loss))
    fooled.index_copy_(0, remaining, candidate_fooled)


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


def _square_l2(
    objective: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    inputs: Tensor,
    labels: Tensor,
    eps: Tensor,
    queries: int,
    p_init: float,
) -> Tensor:
    """The L2 random search; ``eps`` is (N, 1, 1, 1). See ``square``."""
    n, channels, height, width = inputs.shape
    device = inputs.device
    start = _block_grid(n, channels, height, width, device, inputs.dtype)
    best = _to_l2_sphere(inputs, start, eps)
    best_loss, fooled = objective(best, labels)
    for query in range(1, queries):
        remaining = (~fooled).nonzero().squeeze(1)
        if len(remaining) == 0:
            break
        x, y = inputs.index_select(0, remaining), labels.index_select(0, remaining)
        x_best, radius = best.index_select(0, remaining), eps.index_select(0, remaining)
        delta = x_best - x
        size = _odd_window_size(query, queries, p_init, height, width)
        r1, r2 = torch.randint(0, height - size + 1, (2,)).tolist()
        c1, c2 = torch.randint(0, width - size + 1, (2,)).tolist()
        first = (..., slice(r1, r1 + size), slice(c1, c1 + size))
        second = (..., slice(r2, r2 + size), slice(c2, c2 + size))
        both = torch.zeros_like(delta[:, :1])
        both[first] = 1.0
        both[second] = 1.0
        in_first = delta[first]
        old = in_first / _l2(in_first, dims=(2, 3)).clamp_min(1e-12)
        signs = torch.randint(0, 2, (len(x), channels, 1, 1), device=device) * 2.0 - 1.0
        block = _signed_block(size, device, inputs.dtype) * signs + old
        # Mass for the first window: what the two windows held, plus what the ball has left.
        spare = (radius.square() - _l2(delta).square()).clamp_min(0) / channels
        mass = (spare + _l2(delta * both).square()).sqrt()
        block = block / _l2(block, dims=(2, 3)).clamp_min(1e-12) * mass
        delta[second] = 0.0
        delta[first] = block
        candidate = _to_l2_sphere(x, delta, radius)
        _keep_improvements(objective(candidate, y), candidate, remaining, best, best_loss, fooled)
    return best


def _l2(x: Tensor, dims: tuple[int, ...] = (1, 2, 3)) -> Tensor:
    return x.square().sum(dim=dims, keepdim=True).sqrt()


def _to_l2_sphere(inputs: Tensor, delta: Tensor, eps: Tensor) -> Tensor:
    """``inputs + delta`` with delta rescaled to L2 norm eps, clipped to [0, 1] (which can only
    shorten it)."""
    return (inputs + delta * (eps / _l2(delta).clamp_min(1e-12))).clamp_(0.0, 1.0)


def _odd_window_size(query: int, queries: int, p_init: float, height: int, width: int) -> int:
    """The window side for L2: at least 3 and odd (a block has a centre), at most the image."""
    size = max(_window_size(query, queries, p_init, height, width), 3)
    size += 1 - size % 2
    limit = min(height, width)
    return size if size <= limit else limit - 1 + limit % 2


@functools.lru_cache(maxsize=64)
def _rings(rows: int, cols: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Concentric rectangles around the centre, the k-th ring adding 1 / (k + 1)^2: a cheap,
    peaked stand-in for a Gaussian bump; unit L2 norm. Cached: each query of the L2 attack asks
    for one of a few sizes, and building it is one small kernel per ring (callers never write
    into it)."""
    pattern = torch.zeros(rows, cols, device=device, dtype=dtype)
    centre_row, centre_col = rows // 2, cols // 2
    for k in range(max(centre_row, centre_col) + 1):
        top, left = max(centre_row - k, 0), max(centre_col - k, 0)
        pattern[top : centre_row + k + 1, left : centre_col + k + 1] += 1.0 / (k + 1) ** 2
    return pattern / pattern.norm()


def _signed_block(size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """A size x size block: a positive bump over a negative one (randomly turned sideways), unit
    L2 norm: the L2 attack's update direction."""
    half = size // 2
    block = torch.cat(
        [_rings(half, size, device, dtype), -_rings(size - half, size, device, dtype)], dim=0
    )
    if torch.rand(()) < 0.5:
        block = block.T
    return block / block.norm()


def _block_grid(
    n: int, channels: int, height: int, width: int, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """The L2 start: a 5 x 5 grid of signed blocks (random sign per sample and channel), centred."""
    delta = torch.zeros(n, channels, height, width, device=device, dtype=dtype)
    size = max(min(height, width) // 5, 1)
    top0, left0 = (height - 5 * size) // 2, (width - 5 * size) // 2
    for row in range(5):
        for col in range(5):
            if size < 2:
                block = torch.ones(1, 1, device=device, dtype=dtype)
            else:
                block = _signed_block(size, device, dtype)
            signs = torch.randint(0, 2, (n, channels, 1, 1), device=device).to(dtype) * 2 - 1
            top, left = top0 + row * size, left0 + col * size
            delta[:, :, top : top + size, left : left + size] += block * signs
    return delta
