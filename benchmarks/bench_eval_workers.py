"""``advkit eval --nproc 2`` against one process with both cores, side by side, same evaluation.

Rounds alternate the two layouts. Two ratios per round: the attacks' seconds (the JSON's
``seconds``: the sharded part) and the whole command's wall time (start-up, launcher, checks
and figures, which rank 0 does alone, included).

    .venv/bin/python benchmarks/bench_eval_workers.py RUN_DIR --suite autoattack --n-examples 1000
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_eval(args: argparse.Namespace, workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "advkit", "eval", args.run, "--suite", args.suite,
                   "--n-examples", str(args.n_examples), "--batch-size", str(args.batch_size),
                   "--quiet", "--out", tmp]  # fmt: skip
        env = os.environ | {"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "2"}
        if workers > 1:
            command += ["--nproc", str(workers)]
            env["OMP_NUM_THREADS"] = "1"
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        data = json.loads(next(Path(tmp).glob("eval-*.json")).read_text())
    return data["seconds"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--suite", default="autoattack")
    parser.add_argument("--n-examples", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    attacks, walls = [], []
    for round_ in range(args.rounds):
        order = (1, 2) if round_ % 2 == 0 else (2, 1)
        got = {w: run_eval(args, w) for w in order}
        attacks.append(got[2][0] / got[1][0])
        walls.append(got[2][1] / got[1][1])
        print(f"round {round_ + 1}: 1 process {got[1][0]:.1f} s attacks / {got[1][1]:.1f} s wall;"
              f" 2 workers {got[2][0]:.1f} s / {got[2][1]:.1f} s", flush=True)  # fmt: skip
    print(f"ratio 2 workers / 1 process: attacks {statistics.median(attacks):.2f} "
          f"({min(attacks):.2f}-{max(attacks):.2f}), wall {statistics.median(walls):.2f} "
          f"({min(walls):.2f}-{max(walls):.2f})")  # fmt: skip


if __name__ == "__main__":
    main()
