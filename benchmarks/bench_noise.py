"""Cost of a keyed draw against torch's own generator of the same shape, side by side.

    .venv/bin/python benchmarks/bench_noise.py [--threads 2] [--rounds 7] [--device cpu]

For each batch shape (Fashion-MNIST/MNIST and CIFAR batches of 128 and 512): a keyed uniform
draw (``KeyedNoise.uniform``) against ``torch.rand``, a keyed normal draw against ``torch.randn``,
the crop-flip integers against ``torch.randint``, and, in the "batch keys" row, the per-batch
making of the keys (``sample_noise``, once per batch and purpose) against one ``torch.rand``.
Rounds interleave the contenders; each round times ``--repeats`` calls of each
and keeps the median call; printed: the median over rounds of each ratio keyed / torch, and its
range. Issue 19's target: a keyed uniform draw <= 1.2x ``torch.rand``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from advkit.noise import sample_noise

SHAPES = [(128, 1, 28, 28), (512, 1, 28, 28), (128, 3, 32, 32), (512, 3, 32, 32)]


def _median_call(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _contenders(shape: tuple[int, ...], device: torch.device) -> dict[str, tuple]:
    """(torch's call, the keyed call) per draw; each keyed call draws the next draw number of
    one batch's noise, made once as training makes it once per batch."""
    kw = {"device": device, "dtype": torch.float32}
    ids = torch.arange(shape[0])
    noise = sample_noise(0, 1, ids, 1)
    return {
        "uniform": (lambda: torch.rand(shape, **kw), lambda: noise.uniform(shape, **kw)),
        "normal": (lambda: torch.randn(shape, **kw), lambda: noise.normal(shape, **kw)),
        "integers": (
            lambda: torch.randint(0, 9, (shape[0], 2), device=device),
            lambda: noise.integers(9, (shape[0], 2), device=device),
        ),
        "batch keys": (lambda: torch.rand(shape, **kw), lambda: sample_noise(0, 2, ids, 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    print(f"device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'shape':<14} {'draw':<10} {'torch ms':>9} {'keyed ms':>9} {'ratio':>6}  range")
    for shape in SHAPES:
        for name, pair in _contenders(shape, device).items():
            for fn in pair:  # warm up: caches, the allocator, the position words
                fn()
            ratios, plain, ours = [], [], []
            for _ in range(args.rounds):
                plain.append(_median_call(pair[0], args.repeats, sync))
                ours.append(_median_call(pair[1], args.repeats, sync))
                ratios.append(ours[-1] / plain[-1])
            print(
                f"{'x'.join(map(str, shape)):<14} {name:<10} "
                f"{statistics.median(plain) * 1e3:>9.3f} "
                f"{statistics.median(ours) * 1e3:>9.3f} {statistics.median(ratios):>6.2f}  "
                f"{min(ratios):.2f}-{max(ratios):.2f}"
            )


if __name__ == "__main__":
    main()
