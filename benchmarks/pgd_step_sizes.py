"""Robust accuracy of trained runs under PGD-K with restarts, at several attack step sizes.

Papers evaluate with different step sizes: ``advkit eval`` uses 2.5 * eps / steps (Madry et al.'s
rule; 0.015 for PGD-50 at eps 0.3), Wong et al.'s MNIST evaluation 0.01. This prints both (or any
others) side by side on the same test images, so a figure can be compared with a paper's.

    .venv/bin/python benchmarks/pgd_step_sizes.py runs/mnist3/fast runs/mnist3/pgd40 \
        --data-dir ../shared/data --steps 50 --restarts 10 --step-sizes 0.01 0.015 --n 1000
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from advkit.attacks import pgd
from advkit.data import load_dataset
from advkit.runs import load_metadata, load_model
from advkit.training.validation import accuracies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--step-sizes", type=float, nargs="+", default=[0.01, 0.015])
    parser.add_argument("--n", type=int, default=1000, help="first N test images")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"PGD-{args.steps} x {args.restarts} restarts, first {args.n} test images")
    print(f"{'run':<32}{'clean':>8}" + "".join(f"{f'step {s:g}':>12}" for s in args.step_sizes))
    for run in args.runs:
        meta = load_metadata(run)
        data = load_dataset(meta["dataset"], args.data_dir or meta.get("data_dir"), val_size=0).test
        data = data.take(torch.arange(min(args.n, len(data))))
        eps, norm = meta["threat"]["eps"], meta["threat"]["norm"]
        torch.manual_seed(0)
        attacks = {
            f"step {s:g}": partial(
                pgd, eps=eps, norm=norm, steps=args.steps, step_size=s, restarts=args.restarts
            )
            for s in args.step_sizes
        }
        result = accuracies(load_model(run), data, attacks)
        row = "".join(f"{result[name]:>12.1%}" for name in attacks)
        print(f"{run:<32}{result['clean']:>8.1%}{row}")


if __name__ == "__main__":
    main()
