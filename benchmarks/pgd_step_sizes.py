"""Robust accuracy of trained runs under PGD-K with restarts, at several attack step sizes.

Papers evaluate with different step sizes: ``advkit eval`` uses 2.5 * eps / steps (Madry et al.'s
rule; 0.015 for PGD-50 at eps 0.3), Wong et al.'s MNIST evaluation 0.01. This prints both (or any
others) side by side on the same test images, so a figure can be compared with a paper's.

``--max-loss`` adds a column for a weaker protocol, the one of the fast-AT authors' evaluation
code: each restart stops moving an example once it is misclassified, and of the restarts the one
with the highest final loss is kept, so an example that one restart fooled counts as robust when
another ends with a higher loss without fooling the model. advkit counts an example as broken
when any restart fools the model. The column shows how much of a gap to a published number the
protocol explains; it is not a robustness figure.

    .venv/bin/python benchmarks/pgd_step_sizes.py runs/mnist3/fast runs/mnist3/pgd40 \
        --data-dir ../shared/data --steps 50 --restarts 10 --step-sizes 0.01 0.015 --n 1000
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.attacks import pgd
from advkit.data import load_dataset
from advkit.runs import load_metadata, load_model
from advkit.training.validation import accuracies


def max_loss_pgd(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, eps: float, step_size: float, steps: int,
    restarts: int,
) -> Tensor:  # fmt: skip
    """L-inf PGD under the weaker protocol of ``--max-loss`` (see the module docstring)."""
    best_delta, best_loss = torch.zeros_like(inputs), inputs.new_zeros(len(inputs))
    for _ in range(restarts):
        delta = (inputs + torch.empty_like(inputs).uniform_(-eps, eps)).clamp(0, 1) - inputs
        for _ in range(steps):
            delta.requires_grad_(True)
            logits = model(inputs + delta)
            active = (logits.argmax(1) == labels).view(-1, 1, 1, 1)
            if not active.any():
                break
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels), delta)
            with torch.no_grad():
                stepped = (delta + step_size * grad.sign()).clamp(-eps, eps)
                stepped = (inputs + stepped).clamp(0, 1) - inputs
                delta = torch.where(active, stepped, delta)
        with torch.no_grad():
            loss = F.cross_entropy(model(inputs + delta), labels, reduction="none")
        better = loss >= best_loss
        best_delta[better], best_loss = delta.detach()[better], torch.maximum(best_loss, loss)
    return inputs + best_delta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", help="run folders")
    parser.add_argument("--data-dir")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--restarts", type=int, default=10)
    parser.add_argument("--step-sizes", type=float, nargs="*", default=[0.01, 0.015])
    parser.add_argument("--n", type=int, default=1000, help="first N test images")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-loss", type=float, metavar="STEP", help="add the weaker "
                        "max-loss protocol (module docstring) with this step size")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"PGD-{args.steps} x {args.restarts} restarts, first {args.n} test images")
    columns = [f"step {s:g}" for s in args.step_sizes]
    columns += [f"max-loss {args.max_loss:g}"] if args.max_loss else []
    print(f"{'run':<32}{'clean':>8}" + "".join(f"{c:>16}" for c in columns))
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
        if args.max_loss:
            attacks[f"max-loss {args.max_loss:g}"] = partial(
                max_loss_pgd, eps=eps, step_size=args.max_loss, steps=args.steps,
                restarts=args.restarts,
            )  # fmt: skip
        result = accuracies(load_model(run), data, attacks)
        row = "".join(f"{result[name]:>16.1%}" for name in attacks)
        print(f"{run:<32}{result['clean']:>8.1%}{row}")


if __name__ == "__main__":
    main()
