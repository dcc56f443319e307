"""`advkit demo` on a tiny recipe: trains, evaluates; a second call only re-evaluates."""

from __future__ import annotations

import json

import pytest

from advkit.cli import main
from tests.conftest import FASHION_DIR

pytestmark = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST missing"
)


def test_demo_trains_then_only_reevaluates(tmp_path, monkeypatch, capsys):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "dataset: fashion-mnist\nmodel: cnn-small\nmethod: pgd\neps: 0.1\nsteps: 2\nepochs: 1\n"
        "subset: 256\nval_size: 128\nval_examples: 64\nbatch_size: 64\n"
    )
    monkeypatch.setattr("advkit.commands.demo.recipe_path", lambda name: recipe)
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--n-examples", "64", "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "trained cnn-small with pgd" in first
    results = json.loads((out / "eval-quick.json").read_text())
    assert 0 <= results["pgd20"] <= results["clean"] <= 1
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "holds a finished run" in second and "trained" not in second
