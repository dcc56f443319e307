"""Command line of the GPU check: parse, decide where to run, run the checks, report."""

from __future__ import annotations

import argparse
import fnmatch
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpucheck.bench import bench_checks, summarize, summary_lines
from gpucheck.features import Features, read_features
from gpucheck.plan import Planner
from gpucheck.profile import Profile, gpu_profile, smoke_profile
from gpucheck.report import (
    environment,
    failures,
    fresh_folder,
    progress_line,
    table,
    write_report,
)
from gpucheck.runner import FAIL, INTERRUPTED, PASS, Check, Result, Runner

ROOT = Path(__file__).resolve().parents[2]
NO_GPU = (
    "gpu_check: no CUDA device here (torch.cuda.is_available() is False): nothing checked; "
    "--cpu-smoke runs the same checks on the CPU with tiny shapes"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpu_check",
        description="Check advkit on a CUDA machine through its CLI (every method with AMP, "
        "channels-last, compile, NCCL workers, SyncBatchNorm, a streamed image folder, eval, "
        "analyze, certify), then benchmark Wong et al.'s fast-AT CIFAR-10 recipe. Without a GPU "
        "it says so and exits 0. Exit status 1 if any check failed.",
    )
    parser.add_argument(
        "--cpu-smoke",
        action="store_true",
        help="run the same checks on the CPU with tiny shapes (for CI)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT.parent / "shared" / "data",
        help="folder holding cifar10.npz (default ../shared/data beside the "
        "checkout; without it the checks use synthetic images and the benchmark "
        "is skipped)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/gpu-check"),
        help="parent folder of this check's new folder <date>-<time> (run "
        "folders, logs, report.json; default runs/gpu-check)",
    )
    parser.add_argument(
        "--runner",
        choices=("subprocess", "inprocess"),
        help="run each advkit command as python -m advkit (default on a GPU) or "
        "through advkit.cli.main in this process (default with --cpu-smoke: "
        "no interpreter start and torch import per check)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="PATTERN",
        help="run only the checks whose names match (shell patterns, e.g. "
        "'amp-*' eval-quick), with those they read",
    )
    parser.add_argument("--no-bench", action="store_true", help="skip the benchmark stage")
    parser.add_argument(
        "--bench-epochs",
        type=int,
        default=15,
        help="epochs of the benchmark's training (default 15, the paper's)",
    )
    parser.add_argument(
        "--bench-examples",
        type=int,
        default=10000,
        help="test images of the benchmark's PGD-50 x 10 (default 10000)",
    )
    parser.add_argument(
        "--bench-aa-examples",
        type=int,
        default=1000,
        help="test images of the benchmark's AutoAttack-style suite (default 1000)",
    )
    parser.add_argument(
        "--include-compile",
        action="store_true",
        help="with --cpu-smoke, also run the torch.compile check (~30 s of C++ build on a CPU)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds a check may run under the subprocess runner (default 600; "
        "the benchmark's own limit is hours)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        print(NO_GPU)
        return 0
    out = fresh_folder(args.out)
    features = read_features()
    if args.cpu_smoke:
        profile = smoke_profile(out / "data")
    else:
        profile = gpu_profile(args.data_dir, out / "data")
    checks = plan(args, profile, features, out / "runs")
    print("\n".join(header(profile, features, out)), flush=True)
    in_process = (args.runner or ("inprocess" if args.cpu_smoke else "subprocess")) == "inprocess"
    started = time.time()
    runner = Runner(out / "logs", in_process=in_process, default_timeout=args.timeout)
    results, interrupted = run_all(runner, checks)
    summary = benchmark(out / "runs", results, profile, features)
    print("\n" + table(results))
    if failures(results):
        print("\n" + failures(results))
    if summary is not None:
        print("\n" + "\n".join(summary_lines(summary)))
    failed = any(r.status == FAIL for r in results)
    report = {
        "mode": "cpu-smoke" if profile.smoke else "gpu",
        "runner": "inprocess" if in_process else "subprocess",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "environment": environment(profile.device),
        "data": profile.data_note,
        "features": {
            "methods": features.methods,
            "suites": features.suites,
            "amp_dtype": features.amp_dtype,
            "certify": features.certify,
            "fast_at_recipe": features.fast_at_recipe,
        },
        "checks": [r.as_json() for r in results],
        "benchmark": summary,
        "passed": not failed and not interrupted,
        "interrupted": interrupted,
    }
    print(f"\nreport: {write_report(out, report)}")
    return INTERRUPTED if interrupted else 1 if failed else 0


def run_all(runner: Runner, checks: list[Check]) -> tuple[list[Result], bool]:
    """The checks' results in order, a line each as it ends; and whether Ctrl-C cut them short."""
    results: list[Result] = []
    try:
        for index, check in enumerate(checks, 1):
            results.append(runner.run(check))
            print(progress_line(index, len(checks), results[-1]), flush=True)
    except KeyboardInterrupt:
        print(f"gpu_check: interrupted; {len(checks) - len(results)} checks not run", flush=True)
        return results, True
    return results, False


def benchmark(
    runs: Path, results: list[Result], profile: Profile, features: Features
) -> dict[str, Any] | None:
    """The benchmark's numbers beside the paper's, when its training passed."""
    train = next((r for r in results if r.name == "bench-train" and r.status == PASS), None)
    if train is None:
        return None
    import torch

    device = torch.cuda.get_device_name(0) if profile.device == "cuda" else "CPU"
    return summarize(runs, device, recipe=features.fast_at_recipe, smoke=profile.smoke,
                     wall_seconds=train.seconds)  # fmt: skip


def plan(args: argparse.Namespace, profile: Profile, features: Features, runs: Path) -> list[Check]:
    """The checks to run: all of them, or those ``--only`` names and what they read."""
    skip = None
    if args.no_bench:
        skip = "--no-bench"
    elif not profile.smoke and not profile.real_cifar:
        skip = f"needs CIFAR-10: no cifar10.npz in {args.data_dir} (--data-dir)"
    smoke = profile.smoke
    checks = [
        *Planner(profile, features, runs).checks(include_compile=args.include_compile),
        *bench_checks(
            profile, features, runs, skip=skip, epochs=1 if smoke else args.bench_epochs,
            examples=profile.eval_examples if smoke else args.bench_examples,
            aa_examples=profile.eval_examples if smoke else args.bench_aa_examples,
        ),
    ]  # fmt: skip
    if not args.only:
        return checks
    wanted = {c.name for c in checks if any(fnmatch.fnmatch(c.name, p) for p in args.only)}
    wanted |= {c.needs for c in checks if c.name in wanted and c.needs}
    return [c for c in checks if c.name in wanted]


def header(profile: Profile, features: Features, out: Path) -> list[str]:
    where = "CPU smoke run (tiny shapes)" if profile.smoke else f"{profile.gpus} CUDA GPU(s)"
    fp16 = "fp16 with --amp-dtype" if features.amp_dtype else "fp16 skipped (no --amp-dtype)"
    certify = "certify" if features.certify else "certify skipped (no advkit certify)"
    return [
        f"gpu_check: {where}, {profile.model}, {profile.data_note}",
        f"methods: {', '.join(features.methods)}; suites: {', '.join(features.suites)}; "
        f"{fp16}; {certify}",
        f"writing {out}",
    ]


if __name__ == "__main__":
    sys.exit(main())
