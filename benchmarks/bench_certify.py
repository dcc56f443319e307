"""Certification's throughput against a bare batched forward loop, side by side in one process;
and ``advkit certify --nproc 2`` (1 thread each) against one process with 2 threads.

Certification costs n forward passes per image: the physical limit is a loop that draws the
noisy batches and runs the model on them. The baseline here is that loop over the very same
noisy batches (the same keyed Gaussian draws, added in front of the model, argmax, bincount on
the device, counts read once per image); advkit's ``Smooth.certify_one`` (n0 + n draws) is
timed against the baseline's n0 + n draws. A second baseline draws its noise with
``torch.randn`` (not keyed: not shardable or resumable), for information. Rounds alternate the
order; the ratios are medians over rounds (range in brackets). Target: advkit / bare >= 0.95.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_certify.py --threads 1
    .venv/bin/python benchmarks/bench_certify.py --workers RUN_DIR   # the --nproc 2 comparison
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
import time
from pathlib import Path

import numpy as np
import torch

from advkit.certification.smoothing import ESTIMATION, SELECTION, Smooth
from advkit.models import create_model
from advkit.noise import sample_noise

REPO = Path(__file__).resolve().parents[1]


def bare_loop(model: torch.nn.Module, x: torch.Tensor, sigma: float, n: int, batch: int,
              sample_id: int, purpose: int, keyed: bool) -> np.ndarray:  # fmt: skip
    counts = torch.zeros(10, dtype=torch.int64)
    with torch.no_grad():
        for start in range(0, n, batch):
            rows = min(batch, n - start)
            if keyed:
                noise = sample_noise(0, sample_id, np.arange(start, start + rows), purpose)
                eps = noise.normal((rows, *x.shape), device=x.device, dtype=x.dtype)
            else:
                eps = torch.randn(rows, *x.shape)
            counts += torch.bincount(model(eps.mul_(sigma).add_(x)).argmax(1), minlength=10)
    return counts.numpy()


def throughput(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, mean=(0.5,), std=(0.25,)).eval()
    images = torch.rand(args.images, 1, 28, 28)
    smooth = Smooth(model, 0.25)

    def ours() -> None:
        for i, x in enumerate(images):
            smooth.certify_one(x, args.n0, args.n, 0.001, sample_id=i, batch_size=args.batch)

    def bare(keyed: bool) -> None:
        for i, x in enumerate(images):
            bare_loop(model, x, 0.25, args.n0, args.batch, i, SELECTION, keyed)
            bare_loop(model, x, 0.25, args.n, args.batch, i, ESTIMATION, keyed)

    ours()  # warm-up
    ratios, randn_ratios = [], []
    for round_ in range(args.rounds):
        times = {}
        order = ["ours", "bare", "randn"] if round_ % 2 == 0 else ["randn", "bare", "ours"]
        for name in order:
            start = time.perf_counter()
            {"ours": ours, "bare": lambda: bare(True), "randn": lambda: bare(False)}[name]()
            times[name] = time.perf_counter() - start
        ratios.append(times["bare"] / times["ours"])
        randn_ratios.append(times["randn"] / times["ours"])
        print(f"round {round_ + 1}: advkit {times['ours']:.2f} s, bare keyed {times['bare']:.2f}"
              f" s, bare randn {times['randn']:.2f} s", flush=True)  # fmt: skip
    draws = args.images * (args.n0 + args.n)
    print(f"{args.model}, {args.images} images x (n0 {args.n0} + n {args.n}) = {draws} draws, "
          f"batch {args.batch}, {args.threads} thread(s), torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")  # fmt: skip
    print(f"throughput advkit / bare keyed loop: {statistics.median(ratios):.3f} "
          f"({min(ratios):.3f}-{max(ratios):.3f}); advkit / bare torch.randn loop: "
          f"{statistics.median(randn_ratios):.3f} ({min(randn_ratios):.3f}-"
          f"{max(randn_ratios):.3f})")  # fmt: skip


def run_certify(args: argparse.Namespace, workers: int) -> tuple[float, float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "advkit", "certify", args.workers, "--sigma", "0.25",
                   "--n0", str(args.n0), "--n", str(args.n), "--n-examples", str(args.images),
                   "--batch-size", str(args.batch), "--empirical-examples", "0", "--quiet",
                   "--out", tmp]  # fmt: skip
        env = os.environ | {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "2"}
        if workers > 1:
            command += ["--nproc", str(workers)]
            env["OMP_NUM_THREADS"] = "1"
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        data = json.loads(next(Path(tmp).glob("cert-*.json")).read_text())
    return data["timing"]["certify"], wall, data


def workers(args: argparse.Namespace) -> None:
    certify_ratios, wall_ratios = [], []
    for round_ in range(args.rounds):
        order = (1, 2) if round_ % 2 == 0 else (2, 1)
        got = {w: run_certify(args, w) for w in order}
        same = all(got[1][2]["per_sample"][key] == got[2][2]["per_sample"][key]
                   for key in ("prediction", "radius"))  # fmt: skip
        certify_ratios.append(got[2][0] / got[1][0])
        wall_ratios.append(got[2][1] / got[1][1])
        print(f"round {round_ + 1}: 1 process x 2 threads {got[1][0]:.1f} s certify / "
              f"{got[1][1]:.1f} s wall; 2 workers x 1 thread {got[2][0]:.1f} s / {got[2][1]:.1f}"
              f" s; identical certificates: {same}", flush=True)  # fmt: skip
    print(f"ratio 2 workers / 1 process: certify {statistics.median(certify_ratios):.2f} "
          f"({min(certify_ratios):.2f}-{max(certify_ratios):.2f}), wall "
          f"{statistics.median(wall_ratios):.2f} ({min(wall_ratios):.2f}-"
          f"{max(wall_ratios):.2f}); target <= 0.9")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn-small")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--workers",
        metavar="RUN_DIR",
        help="instead: advkit certify RUN_DIR with --nproc 2 against 1 process",
    )
    args = parser.parse_args()
    workers(args) if args.workers else throughput(args)


if __name__ == "__main__":
    main()
