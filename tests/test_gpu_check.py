"""benchmarks/gpu_check.py: its CPU smoke run checks every method, suite and feature through
advkit's CLI and passes; a failure fails the run with the command's output; without a GPU it
says so in one line and exits 0."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from advkit.evaluation.suites import SUITES
from advkit.methods import METHODS

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def gpu_check(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("gpucheck.cli")


def read_report(parent: Path) -> dict:
    (folder,) = parent.iterdir()
    return json.loads((folder / "report.json").read_text())


@pytest.mark.slow
def test_the_cpu_smoke_run_checks_every_method_suite_and_feature(gpu_check, tmp_path, capsys):
    assert gpu_check.main(["--cpu-smoke", "--out", str(tmp_path)]) == 0
    report = read_report(tmp_path)
    status = {check["name"]: check["status"] for check in report["checks"]}
    assert "fail" not in status.values(), capsys.readouterr().out
    fp16 = "pass" if report["features"]["amp_dtype"] else "skipped"
    for method in METHODS.names():
        assert status[f"train-{method}"] == status[f"amp-bf16-{method}"] == "pass"
        assert status[f"amp-fp16-{method}"] == fp16
    for suite in SUITES.names():
        assert status[f"eval-{suite}"] == "pass"
    for name in ("channels-last", "nproc-1", "nproc-2", "stream-folder", "analyze",
                 "bench-train", "bench-pgd50x10", "bench-autoattack"):  # fmt: skip
        assert status[name] == "pass", name
    # Skipped on a CPU, each with its reason: SyncBatchNorm, the slow first compile.
    assert status["sync-bn"] == status["compile"] == "skipped"
    assert status["certify"] == ("pass" if report["features"]["certify"] else "skipped")
    bench = report["benchmark"]
    assert bench["tiny_shapes"] and 0 <= bench["pgd50x10"] <= bench["clean"] <= 1
    out = capsys.readouterr().out
    assert "passed, 0 failed" in out and "fast-AT CIFAR-10 benchmark" in out


def test_without_a_gpu_it_says_so_in_one_line_and_exits_0(gpu_check, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "reports")]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "no CUDA device" in out and "--cpu-smoke" in out
    assert not (tmp_path / "reports").exists()


def test_a_failed_check_fails_the_run_and_skips_what_reads_its_run(
    gpu_check, tmp_path, capsys, monkeypatch
):
    plan = importlib.import_module("gpucheck.plan")
    monkeypatch.setitem(plan.METHOD_ARGS, "pgd", ["--no-such-option"])
    argv = ["--cpu-smoke", "--out", str(tmp_path), "--only", "eval-quick", "--no-bench"]
    assert gpu_check.main(argv) == 1
    checks = {check["name"]: check for check in read_report(tmp_path)["checks"]}
    assert list(checks) == ["train-pgd", "eval-quick"]
    assert checks["train-pgd"]["status"] == "fail"
    assert "--no-such-option" in checks["train-pgd"]["detail"]  # advkit's own error line
    assert checks["eval-quick"]["status"] == "skipped"
    assert "needs train-pgd" in checks["eval-quick"]["detail"]
    out = capsys.readouterr().out
    assert "FAILED train-pgd: python -m advkit train" in out


def test_the_subprocess_runner_keeps_a_failed_command_s_output(gpu_check, tmp_path):
    runner = importlib.import_module("gpucheck.runner")
    run = runner.Runner(tmp_path, in_process=False, default_timeout=120)
    result = run.run(runner.Check("bad-option", ["train", "--no-such-option"]))
    assert result.status == "fail"
    assert "exit status 2" in result.detail
    assert "advkit: error: unrecognized arguments: --no-such-option" in result.detail


def gpu_plan(gpu_check, tmp_path: Path, data_dir: Path, gpus: int, monkeypatch) -> dict:
    """The checks of a machine with ``gpus`` GPUs, planned (not run) on this one."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    profile = importlib.import_module("gpucheck.profile").gpu_profile(data_dir, tmp_path)
    features = importlib.import_module("gpucheck.features").read_features()
    args = gpu_check.build_parser().parse_args(["--data-dir", str(data_dir)])
    return {c.name: c for c in gpu_check.plan(args, profile, features, tmp_path / "runs")}


def test_on_gpus_the_checks_take_nccl_a_gpu_per_worker_and_the_paper_recipe(
    gpu_check, tmp_path, monkeypatch
):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar10.npz").touch()  # found (the plan does not read it)
    checks = gpu_plan(gpu_check, tmp_path, data, 4, monkeypatch)
    for name in ("nproc-4", "sync-bn"):
        argv = " ".join(checks[name].argv)
        assert "--nproc 4 --dist-backend nccl" in argv and "--device cuda" in argv
        assert checks[name].skip is None
    assert "--sync-bn" in checks["sync-bn"].argv
    assert checks["compile"].skip is None  # skipped only on a CPU
    train = " ".join(checks["bench-train"].argv)
    for option in ("--method fast", "--eps 8/255", "--step-size 10/255", "--epochs 15",
                   "--schedule cyclic", "--lr 0.2", "--model preact-resnet18", "--dataset cifar10",
                   "--batch-size 128", "--amp"):  # fmt: skip
        assert option in train
    assert "--suite restarts --n-examples 10000" in " ".join(checks["bench-pgd50x10"].argv)


def test_one_gpu_skips_several_workers_and_no_cifar_skips_the_benchmark(
    gpu_check, tmp_path, monkeypatch
):
    checks = gpu_plan(gpu_check, tmp_path, tmp_path / "nowhere", 1, monkeypatch)
    assert "one GPU" in checks["nproc-gpus"].skip
    assert checks["sync-bn"].skip is None and "--nproc 1" in " ".join(checks["sync-bn"].argv)
    assert "cifar10.npz" in checks["bench-train"].skip
    assert "--dataset npz" in " ".join(checks["train-pgd"].argv)  # synthetic CIFAR-shaped
