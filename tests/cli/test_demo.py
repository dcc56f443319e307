"""`advkit demo` on a tiny recipe: trains, evaluates; a second call only re-evaluates."""

from __future__ import annotations

import json

from advkit.cli import main
from tests.conftest import requires_fashion_mnist

pytestmark = requires_fashion_mnist


def test_demo_trains_then_only_reevaluates(tmp_path, monkeypatch, capsys):
    """Like the real recipe, Free-AT with the paper's epochs: 2 "epochs" of m = 2 are 1 pass."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(
        "dataset: fashion-mnist\nmodel: cnn-small\nmethod: free\nreplays: 2\n"
        "paper_epochs: true\neps: 0.1\nepochs: 2\n"
        "subset: 256\nval_size: 128\nval_examples: 64\nbatch_size: 64\n"
    )
    monkeypatch.setattr("advkit.commands.demo.recipe_path", lambda name: recipe)
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--n-examples", "64", "--quiet"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "trained cnn-small with free" in first
    # What runs, not the recipe's raw keys (the real demo said epochs=48 and ran 12 passes):
    assert "free (replays 2), linf eps=0.1, cnn-small on fashion-mnist" in first
    assert "1 pass over 256 training images (epochs 2 in the Free-AT paper's count" in first
    assert "4 minibatches of 64 per pass, 2 weight updates each: 8 weight updates" in first
    assert "epochs=" not in first
    results = json.loads((out / "eval-quick.json").read_text())
    assert 0 <= results["pgd20"] <= results["clean"] <= 1
    assert main(argv) == 0
    second = capsys.readouterr().out
    assert "holds a finished run" in second and "trained" not in second
