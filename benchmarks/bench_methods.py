"""Cost of each training method, relative to natural training, on one small model and data set.

Every method trains its own copy of the same model on the same Fashion-MNIST subset through the
method contract (``method.step`` with an ``optimize`` closure: zero-grad, backward, SGD step).
Repeats are interleaved (the order rotates each round) so that drifting machine load hits all
methods alike. Each batch is timed in wall-clock and in process CPU seconds (the second is less
disturbed by other processes on a shared machine); seconds per pass = batches x the median
batch. Two ratios:

- per pass: one pass over the data. Free-m does m weight updates per batch, so m times the work.
- per update: seconds per pass / updates per batch, the Free-AT paper's comparison (Free-m for
  epochs / m passes against natural training for epochs passes, equal weight updates).

A bare PGD-K loop (K forward + input-gradient passes with ``torch.autograd.grad`` and one
forward-backward weight update, no library code) bounds what PGD training can cost; a bare
Free-m loop does the same for Free-AT (its input gradient is the part natural training skips).

    .venv/bin/python benchmarks/bench_methods.py                # the defaults below
    .venv/bin/python benchmarks/bench_methods.py --compile      # torch.compile the model
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.methods import METHODS, Method, StepContext
from advkit.models.input_conv import InputConv2d

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
MNIST_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist.npz"
CIFAR10_NPZ = MNIST_NPZ.with_name("cifar10.npz")


def load_cifar10(n: int) -> tuple[Tensor, Tensor, str]:
    """The first ``n`` CIFAR-10 training images in [0, 1], (n, 3, 32, 32), for 32x32 models."""
    if not CIFAR10_NPZ.is_file():
        raise SystemExit(f"no data: {CIFAR10_NPZ} is needed for 3-channel models")
    with np.load(CIFAR10_NPZ) as data:
        x, y = data["x_train"][:n], data["y_train"][:n]
    inputs = torch.from_numpy(x.copy()).float().div_(255).permute(0, 3, 1, 2).contiguous()
    return inputs, torch.from_numpy(y.astype(np.int64)).flatten(), f"CIFAR-10 ({CIFAR10_NPZ})"


def load_images(n: int) -> tuple[Tensor, Tensor, str]:
    """The first ``n`` training images in [0, 1], (n, 1, 28, 28), their labels, the source."""
    images = FASHION_MNIST / "train-images-idx3-ubyte.gz"
    if images.is_file():
        with gzip.open(images) as f:
            x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:n]
        with gzip.open(FASHION_MNIST / "train-labels-idx1-ubyte.gz") as f:
            y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
        source = f"Fashion-MNIST ({images.parent})"
    elif MNIST_NPZ.is_file():
        with np.load(MNIST_NPZ) as data:
            x, y = data["x_train"][:n], data["y_train"][:n]
        source = f"MNIST ({MNIST_NPZ})"
    else:
        raise SystemExit(f"no data: install dataset-fashion-mnist or provide {MNIST_NPZ}")
    inputs = torch.from_numpy(x.copy()).float().div_(255).unsqueeze(1)
    return inputs, torch.from_numpy(y.astype(np.int64)), source


def make_model(name: str = "small-bn", channels: int = 1) -> nn.Module:
    """An advkit model ``name``, or by default a small CNN with BatchNorm (so attack and train
    modes differ), about 0.4M parameters, its input layer an ``InputConv2d`` as in advkit's."""
    if name != "small-bn":
        from advkit.models import create_model

        return create_model(name, 10, mean=(0.5,) * channels, std=(0.25,) * channels)
    return nn.Sequential(
        InputConv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
    )  # fmt: skip


class Runner:
    """One model, its optimizer and a function that trains it for one pass over the data."""

    #: builds the benchmarked model (``--model``); every runner gets a fresh copy with one seed.
    factory: Callable[[], nn.Module] = make_model

    def __init__(self, name: str, step: Callable[[Runner, Tensor, Tensor], None], updates: int,
                 compile_model: bool) -> None:  # fmt: skip
        torch.manual_seed(0)
        self.name, self.step_fn, self.updates = name, step, updates
        self.channels_last = False  # whether model and data are channels_last (set by main)
        self.model = Runner.factory()
        self.step_model = torch.compile(self.model) if compile_model else self.model
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

    def optimize(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def run_pass(
        self, inputs: Tensor, labels: Tensor, batch_size: int
    ) -> list[tuple[float, float]]:
        """Train for one pass over the data; (wall, process CPU) seconds of each batch."""
        self.model.train()
        seconds = []
        for i in range(0, len(inputs), batch_size):
            wall, cpu = time.perf_counter(), time.process_time()
            self.step_fn(self, inputs[i : i + batch_size], labels[i : i + batch_size])
            seconds.append((time.perf_counter() - wall, time.process_time() - cpu))
        return seconds


def method_runner(name: str, method: Method, eps: float, compile_model: bool) -> Runner:
    def step(runner: Runner, inputs: Tensor, labels: Tensor) -> None:
        ctx = StepContext(runner.step_model, runner.step_model, runner.optimize, eps)
        method.step(inputs, labels, ctx)

    return Runner(name, step, method.updates_per_batch, compile_model)


def bare_pgd_runner(steps: int, eps: float, compile_model: bool) -> Runner:
    """PGD-K training with nothing but torch: the floor for the ``pgd`` method's cost."""
    step_size = 2.5 * eps / steps

    def step(runner: Runner, inputs: Tensor, labels: Tensor) -> None:
        model = runner.step_model
        model.eval()
        delta = (torch.empty_like(inputs).uniform_(-eps, eps) + inputs).clamp_(0, 1) - inputs
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = F.cross_entropy(model(inputs + delta), labels, reduction="sum")
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step_size * grad.sign()).clamp_(-eps, eps)
            delta = (inputs + delta).clamp_(0, 1).sub_(inputs)
        model.train()
        runner.optimize(F.cross_entropy(model(inputs + delta), labels))

    return Runner(f"bare PGD-{steps} loop", step, 1, compile_model)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bare_free_runner(replays: int, eps: float, compile_model: bool) -> Runner:
    """Free-m training with nothing but torch: the floor for the ``free`` method's cost."""
    carried: list[Tensor] = []

    def step(runner: Runner, inputs: Tensor, labels: Tensor) -> None:
        delta = carried.pop() if carried else torch.zeros_like(inputs)
        delta = (inputs + delta).clamp_(0, 1) - inputs
        for _ in range(replays):
            delta.requires_grad_(True)
            runner.optimize(F.cross_entropy(runner.step_model(inputs + delta), labels))
            delta = (delta.detach() + eps * delta.grad.sign()).clamp_(-eps, eps)
            delta = (inputs + delta).clamp_(0, 1).sub_(inputs)
        carried.append(delta)

    return Runner(f"bare Free-{replays} loop", step, replays, compile_model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model+data")
    parser.add_argument("--compare-channels-last", action="store_true", help="also time each "
                        "method with channels_last model and data, side by side")  # fmt: skip
    parser.add_argument("--only", nargs="*", help="benchmark only these rows (natural always)")
    parser.add_argument("--model", default="small-bn", help="an advkit model name, default a "
                        "small BatchNorm CNN")  # fmt: skip
    parser.add_argument("--cifar", action="store_true", help="CIFAR-10 (3x32x32) from shared/data "
                        "instead of Fashion-MNIST")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    channels = 3 if args.cifar else 1
    Runner.factory = staticmethod(partial(make_model, args.model, channels))
    inputs, labels, source = (load_cifar10 if args.cifar else load_images)(args.images)
    if args.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        Runner.factory = staticmethod(
            lambda build=Runner.factory: build().to(memory_format=torch.channels_last)
        )

    pgd_steps, replays, trades_steps = 7, 4, 10
    methods = {
        "natural": METHODS.get("natural")(),
        f"pgd (K={pgd_steps})": METHODS.get("pgd")(steps=pgd_steps),
        f"free (m={replays})": METHODS.get("free")(replays=replays),
        "fast (random init)": METHODS.get("fast")(init="random"),
        "gradalign (lambda=0.2)": METHODS.get("gradalign")(grad_align_lambda=0.2),
        f"trades (K={trades_steps}, beta=6)": METHODS.get("trades")(steps=trades_steps, beta=6.0),
    }
    runners = [method_runner(n, m, args.eps, args.compile) for n, m in methods.items()]
    runners.append(bare_pgd_runner(pgd_steps, args.eps, args.compile))
    runners.append(bare_free_runner(replays, args.eps, args.compile))
    if args.only:
        keep = ["natural", *args.only]  # with their bare loops
        runners = [r for r in runners if any(word in r.name.lower() for word in keep)]

    twins: list[Runner] = []
    if args.compare_channels_last:
        for name, method in methods.items():
            if any(r.name == name for r in runners):
                twin = method_runner(f"{name} [channels_last]", method, args.eps, args.compile)
                twin.model.to(memory_format=torch.channels_last)
                twin.channels_last = True
                twins.append(twin)
    layouts = {False: inputs, True: inputs.contiguous(memory_format=torch.channels_last)}

    batches = -(-len(inputs) // args.batch_size)
    load = os.getloadavg()[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads on {os.cpu_count()} "
          f"cores ({cpu_name()}), load {load:.1f} at start, compile={args.compile}, "
          f"channels_last={args.channels_last}")  # fmt: skip
    print(f"data: {len(inputs)} images of {source} ({batches} batches of {args.batch_size}), "
          f"linf eps {args.eps}; model: {args.model}, SGD; {args.repeats} interleaved "
          f"repeats after one warm-up pass each")  # fmt: skip
    timed = runners + twins
    for runner in timed:  # warm-up (and compilation)
        runner.run_pass(layouts[runner.channels_last], labels, args.batch_size)
    times: dict[str, list[tuple[float, float]]] = {r.name: [] for r in timed}
    for repeat in range(args.repeats):
        shift = repeat % len(timed)
        for runner in timed[shift:] + timed[:shift]:
            times[runner.name] += runner.run_pass(
                layouts[runner.channels_last], labels, args.batch_size
            )

    for clock, column in (("wall-clock", 0), ("process CPU", 1)):
        report(runners, {n: [t[column] for t in ts] for n, ts in times.items()}, batches, clock)
    report_spread(runners, {n: [t[0] for t in ts] for n, ts in times.items()}, batches)
    if twins:
        print("\nchannels_last / contiguous, wall-clock per pass (median batch), same method:")
        for twin in twins:
            name = twin.name.removesuffix(" [channels_last]")
            ratio = statistics.median(t[0] for t in times[twin.name]) / statistics.median(
                t[0] for t in times[name]
            )
            print(f"{name:<28}{ratio:>8.2f}")


def report_spread(runners: list[Runner], times: dict[str, list[float]], batches: int) -> None:
    """Per-update ratio to natural training in each round (passes a few seconds apart), as
    median and range: how far one run's figure can move on this machine."""
    print("\nper-round wall-clock ratio to natural per update: median [min, max] over rounds")
    per_round = {
        name: [sum(t[i : i + batches]) for i in range(0, len(t), batches)]
        for name, t in times.items()
    }
    for runner in (r for r in runners if r.name != "natural"):
        ratios = [
            mine / runner.updates / natural
            for mine, natural in zip(per_round[runner.name], per_round["natural"], strict=True)
        ]
        print(f"{runner.name:<28}{statistics.median(ratios):>8.3f} "
              f"[{min(ratios):.3f}, {max(ratios):.3f}]")  # fmt: skip


def report(runners: list[Runner], times: dict[str, list[float]], batches: int, clock: str) -> None:
    """Median batch x batches per pass, ratios to natural training, and the targets."""
    per_pass = {name: statistics.median(t) * batches for name, t in times.items()}
    natural = per_pass["natural"]
    print(f"\n{clock} seconds (median batch x {batches} batches)")
    print(f"{'method':<28}{'s/pass':>8}{'x natural/pass':>16}{'x natural/update':>18}")
    for runner in runners:
        ratio = per_pass[runner.name] / natural
        print(f"{runner.name:<28}{per_pass[runner.name]:>8.3f}{ratio:>16.2f}"
              f"{ratio / runner.updates:>18.2f}")  # fmt: skip
    found = {runner.name.split()[0]: runner for runner in runners}
    checks = []
    if "free" in found:
        free = found["free"]
        value = per_pass[free.name] / free.updates / natural
        checks.append((f"{free.name} per update <= 1.10x natural", value, 1.10))
    if "fast" in found:
        value = per_pass[found["fast"].name] / natural
        checks.append((f"{found['fast'].name} per pass <= 2.00x natural", value, 2.0))
    for name, bare in (("pgd", "bare PGD"), ("free", "bare Free")):
        floor = next((r.name for r in runners if r.name.startswith(bare)), None)
        if name in found and floor is not None:
            value = per_pass[found[name].name] / per_pass[floor]
            checks.append((f"{found[name].name} <= 1.05x the {floor}", value, 1.05))
    for text, value, limit in checks:
        print(f"  target: {text}: {value:.3f} {'ok' if value <= limit else 'MISSED'}")


if __name__ == "__main__":
    main()
