"""An AnalysisContext for a trained run folder, as ``advkit analyze`` gives one, for tests."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch

import advkit
from advkit import runs
from advkit.analysis import AnalysisContext
from advkit.analysis.runner import rebuilder
from advkit.data import TensorData, load_dataset


@functools.cache
def fashion_test() -> TensorData:
    return load_dataset("fashion-mnist", val_size=0).test


def history(run_dir: Path) -> list[dict[str, Any]]:
    lines = (Path(run_dir) / runs.METRICS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def run_context(path: Path, examples: int = 300, seed: int = 0, **changes: Any) -> AnalysisContext:
    """``examples`` Fashion-MNIST test points (a seeded sample), the run's model, threat model,
    history and a rebuild of its architecture; ``changes`` replace fields."""
    meta = runs.load_metadata(path)
    test = fashion_test()
    order = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))
    sample = test.take(order[:examples].sort().values)

    values: dict[str, Any] = {
        "model": advkit.load_model(path), "inputs": sample.inputs(slice(None)),
        "labels": sample.labels, "eps": meta["threat"]["eps"], "norm": meta["threat"]["norm"],
        "num_classes": meta["num_classes"], "class_names": meta.get("class_names"),
        "history": history(path), "meta": meta, "run_dir": Path(path), "seed": seed,
        "rebuild": rebuilder(meta, torch.device("cpu"), seed),
    }  # fmt: skip
    values.update(changes)
    return AnalysisContext(**values)
