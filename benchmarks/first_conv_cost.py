"""What the input gradient of a model's first convolution costs, and what InputConv2d saves.

Natural training never needs the gradient with respect to the input; Free-AT (every replay) and
every attack step do. On a one-channel image the first convolution's input gradient is a
transposed convolution with a single output channel. This script times it against the
convolution's forward and its weight gradient, with torch's oneDNN (mkldnn) kernels on and off,
and against one natural training step of the model; then a natural step, a Free-AT replay and an
attack step (input gradient only) of the model with its first layer as advkit's ``InputConv2d``
(input gradient from the native kernel) against the same model with a plain ``nn.Conv2d``.
Interleaved repeats, median times.

    .venv/bin/python benchmarks/first_conv_cost.py                    # cnn-small and small-bn
    .venv/bin/python benchmarks/first_conv_cost.py --models cnn-small --batch-size 100
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from bench_methods import make_model
from torch import Tensor, nn

from advkit.models.input_conv import InputConv2d


def first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def with_plain_first_conv(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose first convolution is a plain ``nn.Conv2d`` (same weights)."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        for name, child in module.named_children():
            if isinstance(child, InputConv2d):
                plain = nn.Conv2d(
                    child.in_channels, child.out_channels, child.kernel_size, child.stride,
                    child.padding, bias=child.bias is not None,
                )  # fmt: skip
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain)
    return twin


def kernel_tasks(conv: nn.Conv2d, inputs: Tensor, grad_out: Tensor) -> dict[str, Callable]:
    """The convolution's forward, weight gradient and both gradients, oneDNN and native."""
    tasks = {}
    for kernels in ("oneDNN", "native"):
        jobs = {
            "forward": lambda: conv(inputs),
            "weight gradient": lambda: conv_backward(conv, inputs, grad_out, [False, True]),
            "input + weight gradient": lambda: conv_backward(conv, inputs, grad_out, [True, True]),
        }
        for job, fn in jobs.items():
            tasks[f"{kernels}: {job}"] = partial(in_mode, fn, kernels == "oneDNN")
    return tasks


def in_mode(fn: Callable[[], object], onednn: bool) -> None:
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=onednn):
        fn()


def training_tasks(model: nn.Module, inputs: Tensor, labels: Tensor) -> dict[str, Callable]:
    """A natural step, a Free-AT replay and an attack step (input gradient only) of ``model``."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # timing only: weights stay put

    def natural() -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    def free_replay() -> None:
        delta = torch.zeros_like(inputs, requires_grad=True)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs + delta), labels).backward()
        optimizer.step()

    def attack_step() -> None:
        delta = torch.zeros_like(inputs, requires_grad=True)
        torch.autograd.grad(F.cross_entropy(model(inputs + delta), labels), delta)

    return {"natural step": natural, "Free replay": free_replay, "attack step": attack_step}


def conv_backward(conv: nn.Conv2d, inputs: Tensor, grad_out: Tensor, mask: list[bool]) -> None:
    torch.ops.aten.convolution_backward(
        grad_out, inputs, conv.weight, [conv.out_channels], list(conv.stride),
        list(conv.padding), list(conv.dilation), False, [0, 0], conv.groups, [*mask, True],
    )  # fmt: skip


def timings(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds of each task, the tasks interleaved round by round."""
    for task in tasks.values():  # warm-up
        for _ in range(5):
            task()
    samples: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(repeats):
        for name, task in tasks.items():
            started = time.perf_counter()
            task()
            samples[name].append(1e3 * (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["cnn-small", "small-bn"])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.repeats} interleaved repeats, median ms")  # fmt: skip
    for name in args.models:
        torch.manual_seed(0)
        model = make_model(name)
        inputs = torch.rand(args.batch_size, 1, 28, 28)
        labels = torch.randint(0, 10, (args.batch_size,))
        conv = first_conv(model)
        grad_out = torch.randn_like(conv(inputs)).detach()
        ours, plain = (
            training_tasks(model, inputs, labels),
            training_tasks(with_plain_first_conv(model), inputs, labels),
        )
        tasks: dict[str, Callable[[], object]] = {
            **{f"InputConv2d: {k}": v for k, v in ours.items()},
            **{f"nn.Conv2d: {k}": v for k, v in plain.items()},
        }
        tasks |= kernel_tasks(conv, inputs, grad_out)
        ms = timings(tasks, args.repeats)
        step = ms["InputConv2d: natural step"]
        print(f"\n{name}: first layer {conv}; natural training step {step:.2f} ms")
        for key, value in ms.items():
            if key.startswith(("oneDNN", "native")):
                print(f"  {key:<34}{value:>8.2f} ms {value / step:>7.1%} of the step")
        for kernels in ("oneDNN", "native"):
            extra = ms[f"{kernels}: input + weight gradient"] - ms[f"{kernels}: weight gradient"]
            print(f"  {kernels}: the input gradient adds {extra:.2f} ms = {extra / step:.1%} of "
                  f"a natural step")  # fmt: skip
        print(f"  {'first layer':<14}{'natural step':>14}{'Free replay':>13}{'attack step':>13}"
              f"{'Free / natural':>16}")  # fmt: skip
        for layer in ("nn.Conv2d", "InputConv2d"):
            row = [ms[f"{layer}: {task}"] for task in ours]
            print(f"  {layer:<14}" + "".join(f"{v:>11.2f} ms" for v in row)
                  + f"{row[1] / row[0]:>16.2f}")  # fmt: skip
        for task in ours:
            ratio = ms[f"InputConv2d: {task}"] / ms[f"nn.Conv2d: {task}"]
            print(f"  {task}: InputConv2d / nn.Conv2d = {ratio:.2f}")


if __name__ == "__main__":
    main()
