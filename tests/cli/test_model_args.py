"""``--model-arg NAME=VALUE``: a registered model's own arguments, recorded in the run folder so
that evaluation and loading in a new process rebuild the same model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from advkit.cli import main
from advkit.config import ConfigError, TrainConfig, load_config
from advkit.models import create_model
from tests.conftest import requires_fashion_mnist

TRAIN = ["--subset", "256", "--val-size", "64", "--val-examples", "32", "--epochs", "1",
         "--batch-size", "64", "--steps", "1", "--val-steps", "1", "--quiet"]  # fmt: skip


@requires_fashion_mnist
def test_a_model_built_with_arguments_is_rebuilt_from_its_run_folder(tmp_path, capsys):
    run = tmp_path / "wrn"
    args = ["--model", "wrn", "--model-arg", "depth=10", "--model-arg", "widen_factor=1"]
    assert main(["train", *args, "--out", str(run), *TRAIN]) == 0
    meta = json.loads((run / "model.json").read_text())
    assert meta["model_kwargs"] == {"depth": 10, "widen_factor": 1}
    expected = sum(p.numel() for p in create_model("wrn", depth=10, widen_factor=1).parameters())
    code = f"import advkit; m = advkit.load_model({str(run)!r}); " \
           "print(sum(p.numel() for p in m.parameters()))"  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == expected  # depth 28, width 10 would be 36 M parameters
    assert main(["eval", str(run), "--n-examples", "8", "--batch-size", "8", "--quiet"]) == 0
    # a resumed run keeps the model's arguments
    assert main(["train", "--resume", str(run), "--model-arg", "depth=16", "--quiet"]) == 2
    assert "--model-arg {'depth': 16} differs" in capsys.readouterr().err


@requires_fashion_mnist
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--model", "wrn", "--model-arg", "depth=abc"],
            "takes depth as int (default 28), got 'abc'",
        ),
        (["--model", "wrn", "--model-arg", "dropout=high"], "takes dropout as float"),
        (["--model", "wrn", "--model-arg", "depht=10"], "does not take the options ['depht']"),
        (["--model", "cnn-small", "--model-arg", "width=2"], "it accepts none"),
        (["--model", "wrn", "--model-arg", "depth"], "--model-arg takes NAME=VALUE"),
    ],
)
def test_bad_model_arguments_are_one_clear_line(extra, message, tmp_path, capsys):
    assert main(["train", *extra, "--out", str(tmp_path / "r"), *TRAIN]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_values_are_typed_and_yaml_takes_a_mapping(tmp_path):
    config = TrainConfig(model_args=["depth=16", "dropout=0.3", "bias=true", "name=x"])
    assert config.model_args == {"depth": 16, "dropout": 0.3, "bias": True, "name": "x"}
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: wrn\nmodel_args: {depth: 16, widen_factor: 2}\n")
    assert load_config(recipe).model_args == {"depth": 16, "widen_factor": 2}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        TrainConfig(model_args=5)
    assert create_model("wrn", depth=10, widen_factor=1, dropout=0).net is not None  # int ok
