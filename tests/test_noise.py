"""Keyed random draws: a sample's draws depend on its key alone, and they are good random numbers.

The statistical tests run at sizes where they have power against the defects a hash-based
generator can have (biased bins, correlated neighbours, rows or draws that echo each other), and
at thresholds (p > 1e-6, |z| < 5) that a correct generator passes: the draws are fixed by their
keys, so each test is a deterministic check, not a flaky one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch.overrides import TorchFunctionMode

from advkit.keyed_bits import (
    _splitmix,
    _splitmix_tensor,
    draw_keys,
    keyed_words,
    premix_keys,
    unit_floats,
)
from advkit.noise import KeyedNoise, sample_noise

CPU = torch.device("cpu")
F32 = {"device": CPU, "dtype": torch.float32}
P_MIN = 1e-6


def _noise(rows: int, step: int = 0, purpose: int = 1) -> KeyedNoise:
    return sample_noise(7, step, torch.arange(rows), purpose)


def _chi2_p(counts: np.ndarray) -> float:
    return float(stats.chisquare(counts).pvalue)


def _correlation_z(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two equal-size samples, as a z-score under independence."""
    a, b = a.double().flatten(), b.double().flatten()
    r = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    return r * np.sqrt(a.numel())


def test_splitmix_on_tensors_equals_numpy() -> None:
    values = np.array([0, 1, 2**63 + 5, 2**64 - 1, 123456789012345], dtype=np.uint64)
    on_tensor = _splitmix_tensor(torch.from_numpy(values.view(np.int64)))
    assert torch.equal(on_tensor, torch.from_numpy(_splitmix(values).view(np.int64)))


def test_a_row_depends_on_its_key_alone() -> None:
    ids = torch.tensor([5, 9, 2, 40])
    whole = sample_noise(3, 11, ids, 2)
    alone = sample_noise(3, 11, ids[2:3], 2)
    reversed_ = sample_noise(3, 11, ids.flip(0), 2)
    for _ in range(3):  # the k-th draw of each object, k = 0, 1, 2
        a = whole.uniform((4, 3, 8, 8), **F32)
        assert torch.equal(a[2], alone.uniform((1, 3, 8, 8), **F32)[0])
        assert torch.equal(a.flip(0), reversed_.uniform((4, 3, 8, 8), **F32))


def test_draws_keys_steps_and_purposes_differ() -> None:
    base = _noise(4).uniform((4, 50), **F32)
    others = [
        _noise(4, step=1).uniform((4, 50), **F32),
        _noise(4, purpose=2).uniform((4, 50), **F32),
        sample_noise(8, 0, torch.arange(4), 1).uniform((4, 50), **F32),
    ]
    noise = _noise(4)
    noise.uniform((4, 50), **F32)
    others.append(noise.uniform((4, 50), **F32))  # the second draw
    for other in others:
        assert (other != base).float().mean() > 0.99


def test_uniform_bins_are_flat() -> None:
    u = _noise(512).uniform((512, 3, 32, 32), **F32)  # 1.57M draws
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = torch.histc(u, bins=1000, min=0.0, max=1.0).numpy()
    assert _chi2_p(counts) > P_MIN
    # the low bits of the 24-bit value, where a weak mixer shows first
    low_bits = (u.double() * 2**24).long() % 256
    assert _chi2_p(torch.bincount(low_bits.flatten(), minlength=256).numpy()) > P_MIN
    bits = ((u.double() * 2**24).long().unsqueeze(-1) >> torch.arange(24)) & 1
    ones = bits.flatten(0, -2).sum(0).double()
    z = (ones - u.numel() / 2) / np.sqrt(u.numel() / 4)
    assert z.abs().max() < 5, z


def test_neighbours_rows_and_draws_are_independent() -> None:
    noise = _noise(2048)
    first = noise.uniform((2048, 784), **F32)
    second = noise.uniform((2048, 784), **F32)
    next_step = _noise(2048, step=1).uniform((2048, 784), **F32)
    pairs = {
        "adjacent elements": (first[:, :-1], first[:, 1:]),
        "adjacent rows (keys of consecutive ids)": (first[:-1], first[1:]),
        "the same row, the next draw": (first, second),
        "the same row, the next step": (first, next_step),
        "element j and the next row's element j+1": (first[:-1, :-1], first[1:, 1:]),
    }
    for name, (a, b) in pairs.items():
        assert abs(_correlation_z(a, b)) < 5, name
        # a 2-d chi-square of the pairs on a 16 x 16 grid catches dependence a correlation misses
        grid = (a * 16).long() * 16 + (b * 16).long()
        assert _chi2_p(torch.bincount(grid.flatten(), minlength=256).numpy()) > P_MIN, name


def test_many_small_batches_look_like_one_stream() -> None:
    """One element per row, across 20,000 batches of 4 consecutive sample ids (the keys that
    differ least): the draws of position 0 are uniform and serially uncorrelated."""
    values = torch.cat(
        [sample_noise(1, step, torch.arange(4), 0).uniform((4, 1), **F32) for step in range(20000)]
    ).flatten()
    assert _chi2_p(torch.histc(values, bins=100, min=0, max=1).numpy()) > P_MIN
    assert abs(_correlation_z(values[:-1], values[1:])) < 5


def test_normal_moments_and_shape() -> None:
    z = _noise(512).normal((512, 3, 32, 32), **F32).double().flatten()
    n = z.numel()
    assert abs(z.mean().item()) * np.sqrt(n) < 5
    assert abs(z.var().item() - 1) / np.sqrt(2 / n) < 5
    assert abs(stats.skew(z.numpy())) / np.sqrt(6 / n) < 5
    assert abs(stats.kurtosis(z.numpy())) / np.sqrt(24 / n) < 5
    assert stats.kstest(z[:200_000].numpy(), "norm").pvalue > P_MIN
    # the two halves of a Box-Muller pair are independent, as are rows
    pairs = _noise(4096).normal((4096, 2), **F32)
    assert abs(_correlation_z(pairs[:, 0], pairs[:, 1])) < 5
    assert abs(_correlation_z(pairs[:, 0] ** 2, pairs[:, 1] ** 2)) < 5


@pytest.mark.parametrize("rows", [1, 3])
def test_normal_of_odd_row_lengths(rows: int) -> None:
    z = _noise(rows).normal((rows, 5, 1), **F32)
    assert z.shape == (rows, 5, 1) and torch.isfinite(z).all()


@pytest.mark.parametrize("high", [2, 9, 1000])
def test_integers_are_uniform(high: int) -> None:
    values = _noise(8192).integers(high, (8192, 16), device=CPU)
    assert values.dtype == torch.int64 and values.min() >= 0 and values.max() < high
    counts = torch.bincount(values.flatten(), minlength=high).numpy()
    assert _chi2_p(counts) > P_MIN


@pytest.mark.parametrize(
    ("dtype", "bits"), [(torch.float16, 11), (torch.bfloat16, 8), (torch.float32, 24)]
)
def test_low_precision_draws_stay_below_one(dtype: torch.dtype, bits: int) -> None:
    u = _noise(64).uniform((64, 4096), device=CPU, dtype=dtype)
    assert u.dtype == dtype and u.min() >= 0 and u.max() < 1
    # every value is a multiple of 2**-bits: exact in the dtype, never rounded up to 1
    assert torch.equal(u.double() * 2**bits, (u.double() * 2**bits).floor())


def test_float64_draws_carry_53_bits() -> None:
    u = _noise(64).uniform((64, 4096), device=CPU, dtype=torch.float64)
    assert u.min() >= 0 and u.max() < 1
    scaled = u * 2**53
    assert torch.equal(scaled, scaled.floor())
    assert (scaled % 2**29 != 0).float().mean() > 0.99  # not float32's 24 bits widened
    assert _chi2_p(torch.histc(u, bins=100, min=0, max=1).numpy()) > P_MIN


def test_a_draw_of_the_wrong_row_count_is_refused() -> None:
    with pytest.raises(ValueError, match="3 rows from noise keyed for 4 samples"):
        _noise(4).uniform((3, 2), **F32)


def test_integers_refuse_an_impossible_range() -> None:
    with pytest.raises(ValueError, match="high"):
        _noise(2).integers(0, (2,), device=CPU)


def test_unit_floats_reject_integer_dtypes() -> None:
    words = keyed_words(torch.tensor([1, 2]), 3)
    with pytest.raises(ValueError, match="floating point"):
        unit_floats(words, torch.int32)


def test_one_key_bit_flips_every_output_bit_half_the_time() -> None:
    """Avalanche: for each of the 64 key bits, keys that differ in that bit alone give words whose
    top 24 bits (what floats and integers read) differ with probability 1/2 each."""
    keys = torch.from_numpy(_splitmix(np.arange(64, dtype=np.uint64)).view(np.int64))
    words = keyed_words(keys, 2048)
    n = words.numel()
    worst = 0.0
    for bit in range(64):
        flipped = keyed_words(keys ^ (1 << bit if bit < 63 else -(2**63)), 2048)
        differ = ((words ^ flipped).unsqueeze(-1) >> torch.arange(8, 32)) & 1
        rate = differ.flatten(0, 1).double().mean(0)
        worst = max(worst, (rate - 0.5).abs().max().item())
    assert worst < 5 * 0.5 / np.sqrt(n), worst


def test_draw_keys_on_the_host_equal_those_on_a_device() -> None:
    premixed = premix_keys(np.array([0, 3, 2**64 - 1], dtype=np.uint64))
    for draw in (0, 1, 2**40):
        on_host = torch.from_numpy(draw_keys(premixed, draw))
        assert torch.equal(on_host, draw_keys(torch.from_numpy(premixed), draw))


class _CountCalls(TorchFunctionMode):
    """Counts torch calls: a stand-in for kernel launches on an accelerator."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("draw", ["uniform", "normal", "integers"])
def test_an_accelerator_draw_is_one_call_sequence_whatever_the_batch(draw: str) -> None:
    """On a non-CPU device (meta here: shapes only, and any host sync would raise) a draw is the
    same sequence of torch calls for a batch of 8 as for 512: no per-row work, no round trip."""
    meta = torch.device("meta")

    def one_draw(noise: KeyedNoise, rows: int) -> torch.Tensor:
        if draw == "integers":
            return noise.integers(9, (rows, 2), device=meta)
        return getattr(noise, draw)((rows, 3, 32, 32), device=meta, dtype=torch.float32)

    sequences = []
    for rows in (8, 512):
        noise = _noise(rows)
        one_draw(noise, rows)  # the first draw moves the keys (and may fill the position cache)
        with _CountCalls() as counter:
            out = one_draw(noise, rows)
        assert out.device.type == "meta" and out.shape[0] == rows
        sequences.append(counter.calls)
    assert sequences[0] == sequences[1]
    assert len(sequences[0]) < 80, sequences[0]  # calls, not only kernels (element_size...)
