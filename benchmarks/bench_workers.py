"""Two workers x one thread against one process x two threads, same global batch, one machine.

Each configuration trains the same model with the same method on the same Fashion-MNIST subset
through the real command line (``advkit train``, and ``advkit train --nproc 2``, which starts the
workers through torch's elastic launcher). Rounds alternate the two layouts so that drifting
machine load hits both alike; the time per epoch is the run's own ``train_seconds`` (training
steps only: no start-up, validation or writing), and the ratio 2x1 / 1x2 is taken per round.

    .venv/bin/python benchmarks/bench_workers.py                       # defaults below
    .venv/bin/python benchmarks/bench_workers.py --models cnn-small --methods pgd --rounds 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def epoch_seconds(args: argparse.Namespace, model: str, method: str, workers: int) -> float:
    """Median training seconds per epoch of one run (first epoch dropped when there are more)."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        command = [
            sys.executable, "-m", "advkit", "train", "--model", model, "--method", method,
            "--subset", str(args.subset), "--val-size", "256", "--val-examples", "0",
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--quiet",
            "--out", str(run),
        ]  # fmt: skip
        env = os.environ | {"PYTHONPATH": str(REPO / "src")}
        if workers > 1:
            command += ["--nproc", str(workers)]
            env["OMP_NUM_THREADS"] = str(max(1, args.threads // workers))
        else:
            env["OMP_NUM_THREADS"] = str(args.threads)
        subprocess.run(command, env=env, check=True, capture_output=True)
        records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    totals = [r["train_seconds"] for r in records]
    per_epoch = [b - a for a, b in zip([0.0, *totals], totals, strict=False)]
    return statistics.median(per_epoch[1:] or per_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn-small,cnn-bn")
    parser.add_argument("--methods", default="natural,pgd,free,fast")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subset", type=int, default=4352, help="training images (+256 val)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="cores shared out")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; {args.subset - 256} images, batch {args.batch_size}, "
          f"{args.epochs} epochs, {args.rounds} rounds")  # fmt: skip
    print("| model | method | 1 x 2 s/epoch | 2 x 1 s/epoch | ratio 2x1 / 1x2 (median, range) |")
    print("| --- | --- | --- | --- | --- |")
    for model in args.models.split(","):
        for method in args.methods.split(","):
            singles, pairs, ratios = [], [], []
            for round_ in range(args.rounds):
                order = (1, 2) if round_ % 2 == 0 else (2, 1)
                seconds = {w: epoch_seconds(args, model, method, w) for w in order}
                singles.append(seconds[1])
                pairs.append(seconds[2])
                ratios.append(seconds[2] / seconds[1])
            print(f"| {model} | {method} | {statistics.median(singles):.2f} | "
                  f"{statistics.median(pairs):.2f} | {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f}) |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
