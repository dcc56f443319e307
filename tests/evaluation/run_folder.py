"""A fake run folder for `advkit eval` tests: a random cnn-small and a tiny .npz dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from advkit.models import create_model


def make_run(
    root: Path, *, n_test: int = 24, seed: int = 0, name: str = "run",
    method: dict | None = None,
) -> Path:  # fmt: skip
    """A run folder whose model classifies its ``n_test`` test images "correctly" (labels are
    its predictions), trained at L-inf eps 0.1; the data lies in ``root/tiny.npz``."""
    torch.manual_seed(seed)
    model = create_model("cnn-small", num_classes=10, mean=(0.5,), std=(0.25,)).eval()
    rng = np.random.default_rng(0)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    with torch.no_grad():
        y_test = model(torch.from_numpy(x_test)[:, None].float() / 255).argmax(1).numpy()
    data = root / "tiny.npz"
    np.savez(data, x_train=x_test, y_train=y_test, x_test=x_test, y_test=y_test)
    run = root / name
    run.mkdir(exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, run / "model.safetensors")
    meta = {
        "architecture": "cnn-small", "num_classes": 10, "mean": [0.5], "std": [0.25],
        "input_shape": [1, 28, 28], "dataset": "npz", "data_dir": str(data),
        "threat": {"norm": "linf", "eps": 0.1}, "method": method or {"name": "pgd", "steps": 2},
        "epochs": 1, "train_seconds": 3.0,
    }  # fmt: skip
    (run / "model.json").write_text(json.dumps(meta))
    return run


def listing(folder: Path) -> dict[str, int]:
    """{relative path: size} of every file under ``folder``."""
    return {
        str(path.relative_to(folder)): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def stub_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `advkit eval` write 3-byte PNGs: the figures are tested in test_eval_report, and
    matplotlib takes a second per figure on a busy CPU."""
    from advkit.evaluation import session

    def stub(*args: object, **kwargs: object) -> bytes:
        return b"png"

    monkeypatch.setattr(session, "examples_png", stub)
    monkeypatch.setattr(session, "sweep_png", stub)
