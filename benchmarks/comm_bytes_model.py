"""Bytes per iteration of each gradient compression, from the analytic model, for a model too
large to train here (default ResNet-50, 25.6 M parameters), beside the DAT paper's Table 4.

    .venv/bin/python benchmarks/comm_bytes_model.py [--model resnet50] [--workers 2 6 36]

Per worker and iteration: the payload it hands to collectives and a ring-model estimate of the
bytes it puts on the wire (``advkit.distributed.compression.estimate_bytes``; the counters that
training writes to metrics.jsonl follow the same model and are tested against it). PowerSGD's
bytes depend on the tensors' shapes: each tensor with more than one dimension, viewed as a
matrix of rows x the rest, sends its P and Q factors when torch's own rule
(``powerSGD_hook._should_compress``, minimum compression rate 2) says it pays, else it is sent
whole, as every 1-d tensor is; all of it through fp32 all-reduces.
"""

from __future__ import annotations

import argparse

from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import _should_compress

from advkit.distributed.compression import estimate_bytes
from advkit.distributed.compression.communication import WIRE_SHARE
from advkit.models import create_model

#: The DAT paper's Table 4 (ImageNet, ResNet-50, 6 nodes x 6 GPUs): MB sent per iteration.
PAPER_MB = {"none": 2924, "fp16": 1462, "int8": 731, "int8-2sided": 244}
COMPRESSIONS = ("none", "fp16", "int8", "int8-2sided")


def powersgd_elements(shapes: list[tuple[int, ...]], rank: int) -> int:
    """fp32 elements PowerSGD all-reduces per iteration once it compresses."""
    total = 0
    for shape in shapes:
        numel = 1
        for size in shape:
            numel *= size
        if len(shape) <= 1:
            total += numel
            continue
        rows, cols = shape[0], numel // shape[0]
        r = min(rows, cols, rank)
        worth, _, compressed = _should_compress(rows, cols, r, 2)
        total += compressed if worth else numel
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 6, 36])
    parser.add_argument("--powersgd-ranks", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    model = create_model(args.model, num_classes=args.classes)
    shapes = [tuple(p.shape) for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]  # int8 pads each tensor to whole blocks
    numel = sum(sizes)
    print(f"{args.model}: {numel / 1e6:.2f} M parameters, fp32 gradient {4 * numel / 1e6:.1f} MB")
    names = [*COMPRESSIONS, *(f"powersgd r={r}" for r in args.powersgd_ranks)]
    print("\nwire MB per worker per iteration (payload MB in brackets):\n")
    print("| workers | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for workers in args.workers:
        cells = []
        fp32_wire = estimate_bytes(sizes, "none", workers)[1]
        for name in COMPRESSIONS:
            payload, wire = estimate_bytes(sizes, name, workers)
            cells.append(f"{wire / 1e6:.1f} ({payload / 1e6:.1f}) = {wire / fp32_wire:.3f}x")
        for rank in args.powersgd_ranks:
            payload = 4 * powersgd_elements(shapes, rank)
            wire = WIRE_SHARE["all_reduce"](workers) * payload
            cells.append(f"{wire / 1e6:.2f} ({payload / 1e6:.2f}) = {wire / fp32_wire:.4f}x")
        print(f"| {workers} | " + " | ".join(cells) + " |")
    paper = " / ".join(f"{PAPER_MB[name]}" for name in COMPRESSIONS)
    ratios = " / ".join(f"{PAPER_MB[name] / PAPER_MB['none']:.3f}" for name in COMPRESSIONS)
    print(f"\nDAT paper, 6 x 6 GPUs, fp32 / fp16 / int8 / int8-2sided: {paper} MB ({ratios}x)")
    # Its numbers are what 6 nodes send in total, in MiB, with every row all-gathered between
    # nodes (one-sided: each node sends (W - 1) copies of its gradient) and the two-sided row as
    # all_to_all + all_gather (2 (W - 1) / W of one gradient per node).
    nodes, mib = 6, 2**20
    one_sided = {name: nodes * (nodes - 1) * width * numel / mib
                 for name, width in (("none", 4), ("fp16", 2), ("int8", 1))}  # fmt: skip
    two_sided = nodes * 2 * (nodes - 1) / nodes * numel / mib
    model_mib = " / ".join(f"{v:.0f}" for v in [*one_sided.values(), two_sided])
    print(f"that accounting on {numel / 1e6:.2f} M parameters, 6 nodes: {model_mib} MiB")


if __name__ == "__main__":
    main()
