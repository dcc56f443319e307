"""Time advkit's PGD against torchattacks.PGD and ART's ProjectedGradientDescentPyTorch.

Same model (eval mode), same batch, same L-inf eps, step size, number of steps and one uniform
random start; the implementations alternate within each round (the order rotates), and the report
gives per-implementation medians (wall clock, and process CPU time, steadier on a shared machine)
and the ratios ours / theirs. A competitor that cannot be imported is skipped, with the import
error and the command that installs it (``INSTALL``).

    .venv/bin/python benchmarks/bench_attacks.py [--rounds 5] [--steps 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor, nn

from advkit.attacks import pgd

Runner = Callable[[Tensor, Tensor], Tensor]

#: The competitors and what they import (the bench extra), without the dependencies they declare
#: but do not need here (torchattacks' torchvision would replace the CPU torch).
INSTALL = (
    "pip install -e '.[bench]' && pip install --no-deps torchattacks adversarial-robustness-toolbox"
)


def skipped(name: str, error: ImportError) -> str:
    """Why a competitor is left out, and how to bring it in."""
    return f"{name} skipped: {error} (to compare with it: {INSTALL})"


def build_model(name: str, device: torch.device) -> tuple[nn.Module, tuple[int, int, int]]:
    """A model from ``advkit.models`` (random weights: timing does not depend on them)."""
    from advkit.models import MODELS, create_model

    torch.manual_seed(0)
    if name == "cnn-small" or "preact-resnet18" not in MODELS:
        model, shape = create_model("cnn-small", mean=(0.1307,), std=(0.3081,)), (1, 28, 28)
    else:
        model = create_model(
            "preact-resnet18", mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616)
        )
        shape = (3, 32, 32)
    return model.to(device).eval(), shape


def runners(
    model: nn.Module, shape: tuple[int, ...], eps: float, alpha: float, steps: int, batch: int
) -> dict[str, Runner]:
    """One callable per implementation, all ``(inputs, labels) -> adv_inputs`` on the same model."""
    out: dict[str, Runner] = {
        "advkit": lambda x, y: pgd(model, x, y, eps=eps, steps=steps, step_size=alpha),
    }
    try:
        import torchattacks

        attack = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        out["torchattacks"] = lambda x, y: attack(x, y)
    except ImportError as error:
        print(skipped("torchattacks", error))
    try:
        from art.attacks.evasion import ProjectedGradientDescentPyTorch
        from art.estimators.classification import PyTorchClassifier

        classifier = PyTorchClassifier(
            model=model, loss=nn.CrossEntropyLoss(), input_shape=shape,
            nb_classes=10, clip_values=(0.0, 1.0),
            device_type="gpu" if next(model.parameters()).is_cuda else "cpu",
        )  # fmt: skip
        art_attack = ProjectedGradientDescentPyTorch(
            classifier, norm=np.inf, eps=eps, eps_step=alpha, max_iter=steps, targeted=False,
            num_random_init=1, batch_size=batch, verbose=False,
        )  # fmt: skip

        def run_art(x: Tensor, y: Tensor) -> Tensor:
            # ART works on numpy arrays; the host copies are part of using it.
            adv = art_attack.generate(x.cpu().numpy(), y.cpu().numpy())
            return torch.from_numpy(adv).to(x.device)

        out["art"] = run_art
    except ImportError as error:
        print(skipped("adversarial-robustness-toolbox", error))
    return out


def bench(name: str, device: torch.device, batch: int, steps: int, rounds: int, eps: float) -> None:
    model, shape = build_model(name, device)
    alpha = 2.5 * eps / steps
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(batch, *shape, generator=generator).to(device)
    labels = torch.randint(0, 10, (batch,), generator=generator).to(device)
    impls = runners(model, shape, eps, alpha, steps, batch)
    model_name = type(getattr(model, "net", model)).__name__
    print(
        f"\n== {name} ({model_name}, input {shape}), batch {batch}, steps {steps}, "
        f"eps {eps:.4f}, step {alpha:.4f}, random start, eval mode =="
    )
    times: dict[str, list[float]] = {key: [] for key in impls}
    cpu_times: dict[str, list[float]] = {key: [] for key in impls}
    accuracy: dict[str, float] = {}
    names = list(impls)
    for round_index in range(rounds + 1):  # round 0 warms up and is not counted
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for key in order:
            torch.manual_seed(round_index)
            _sync(device)
            began, cpu_began = time.perf_counter(), time.process_time()
            adv = impls[key](inputs, labels)
            _sync(device)
            elapsed, cpu_elapsed = time.perf_counter() - began, time.process_time() - cpu_began
            if round_index:
                times[key].append(elapsed)
                cpu_times[key].append(cpu_elapsed)
            size = (adv - inputs).abs().amax().item()
            assert size <= eps + 1e-5 and adv.min() >= 0 and adv.max() <= 1, (key, size)
            with torch.no_grad():
                accuracy[key] = (model(adv).argmax(dim=1) == labels).float().mean().item()
    ours, ours_cpu = statistics.median(times["advkit"]), statistics.median(cpu_times["advkit"])
    print(
        f"{'implementation':<14} {'wall med s':>10} {'wall min s':>10} {'ours/theirs':>11} "
        f"{'cpu med s':>10} {'ours/theirs':>11} {'adv acc':>8}"
    )
    for key in names:
        median, cpu_median = statistics.median(times[key]), statistics.median(cpu_times[key])
        ratio = "" if key == "advkit" else f"{ours / median:.3f}"
        cpu_ratio = "" if key == "advkit" else f"{ours_cpu / cpu_median:.3f}"
        print(
            f"{key:<14} {median:10.4f} {min(times[key]):10.4f} {ratio:>11} "
            f"{cpu_median:10.4f} {cpu_ratio:>11} {accuracy[key]:8.3f}"
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn-small", "preact-resnet18"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: 128 cnn, 32 resnet")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    versions = {"torch": torch.__version__}
    for module in ("torchattacks", "art"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError as error:
            versions[module] = f"unavailable ({error})"
    print(
        f"python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f", device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", torch threads {torch.get_num_threads()}, rounds {args.rounds} (+1 warm-up)"
    )
    for name in args.models:
        batch = args.batch or (128 if name == "cnn-small" else 32)
        bench(name, device, batch, args.steps, args.rounds, args.eps)


if __name__ == "__main__":
    main()
