"""Run folders with evaluations for the `advkit compare` tests, written by advkit's own report
code (report_dict, the output naming of place_in_folder, write_json): no attack runs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch

from advkit.evaluation.evaluate import EvalResult
from advkit.evaluation.outputs import Identity, place_in_folder
from advkit.evaluation.provenance import file_sha256
from advkit.evaluation.report import report_dict, write_json
from advkit.evaluation.suites import build_suite

ATTACKS = {
    "quick": ["pgd20"], "paper": ["fgsm", "pgd20", "pgd100", "cw100", "pgd20x10"],
    "autoattack": ["apgd_ce", "apgd_t", "square"],
}  # fmt: skip


def make_run(
    root: Path, name: str, *, method: str = "pgd", eps: float = 0.1, norm: str = "linf",
    architecture: str = "cnn-small", model_kwargs: Mapping[str, object] | None = None,
    weights: bytes = b"weights",
) -> Path:  # fmt: skip
    """A run folder's model.json and a stand-in weights file (compare only hashes it)."""
    run = root / name
    run.mkdir(parents=True, exist_ok=True)
    meta = {
        "architecture": architecture, "model_kwargs": dict(model_kwargs or {}),
        "num_classes": 10, "mean": [0.5], "std": [0.25], "dataset": "fashion-mnist",
        "threat": {"norm": norm, "eps": eps}, "method": {"name": method, "steps": 7},
    }  # fmt: skip
    (run / "model.json").write_text(json.dumps(meta))
    (run / "model.safetensors").write_bytes(weights)
    return run


def add_eval(
    folder: Path, correct: Mapping[str, int], *, n: int = 200, suite: str = "quick",
    eps: float = 0.1, norm: str = "linf", seed: int = 0, warnings: tuple[str, ...] = (),
    run_threat: Mapping[str, object] | None = None, weights: Path | None = None,
    checks: str = "fast", extra: Mapping[str, object] | None = None,
) -> Path:  # fmt: skip
    """Write an evaluation of ``n`` examples into ``folder`` as `advkit eval` names it, with
    ``correct[column]`` examples right per column (clean, each attack of ``suite``; the worst
    case is the smallest attack's). ``weights``: the file whose hash it records (default the
    run's model.safetensors)."""
    attacks = ATTACKS[suite]
    clean = _first(correct["clean"], n)
    robust = {name: _first(correct.get(name, correct["clean"]), n) for name in attacks}
    worst = _first(min(int(values.sum()) for values in robust.values()), n)
    cascade = suite == "autoattack"
    result = EvalResult(suite, eps, norm, seed, clean, robust, worst, 1.0, cascade)
    weights = weights or folder / "model.safetensors"
    sha = file_sha256(weights) if weights.is_file() else "0" * 64
    record = {"batch_size": 256, "model": sha[:16], "weights_sha256": sha,
              "architecture": "cnn-small", "indices": list(range(n)),
              "checks": {"level": checks, "sample": 16, "budget": 640, "seconds": 0.1,
                         "cost": 600, "runs": []},
              **(extra or {})}  # fmt: skip
    data = report_dict(result, warnings, suite=build_suite(suite, eps=eps, norm=norm), extra=record)
    threat = run_threat if run_threat is not None else _own_threat(folder)
    placement = place_in_folder(folder, Identity.from_report(data), threat)
    return write_json(placement.outputs.json, data)


def _first(k: int, n: int) -> torch.Tensor:
    values = torch.zeros(n, dtype=torch.bool)
    values[:k] = True
    return values


def _own_threat(folder: Path) -> Mapping[str, object]:
    meta = folder / "model.json"
    return json.loads(meta.read_text())["threat"] if meta.is_file() else {}
