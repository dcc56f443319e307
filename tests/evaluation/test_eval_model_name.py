"""A report names the model with the arguments it was built with: ``wrn (depth=10,
widen_factor=1, dropout=0.0)``, never a bare ``wrn`` that says neither depth nor width."""

from __future__ import annotations

import json

import torch
from safetensors.torch import save_file

from advkit.cli import main
from advkit.evaluation.provenance import model_arguments, model_text
from advkit.models import create_model
from tests.evaluation.run_folder import make_run, stub_figures

WRN = "wrn (depth=10, widen_factor=1, dropout=0.0)"


def test_a_registered_architecture_is_named_with_its_defaults_and_given_arguments():
    assert model_arguments("wrn", {"depth": 10, "widen_factor": 1}) == {
        "depth": 10, "widen_factor": 1, "dropout": 0.0,
    }  # fmt: skip
    assert model_text("wrn", model_arguments("wrn")) == (
        "wrn (depth=28, widen_factor=10, dropout=0.0)"
    )
    assert model_arguments("cnn-small") == {} and model_text("cnn-small", {}) == "cnn-small"
    user = "/code/net.py:build"  # a user's file: its arguments as given, the file never imported
    assert model_arguments(user, {"width": 8}) == {"width": 8}
    assert model_text(user, {"width": 8}) == "/code/net.py:build (width=8)"


def test_advkit_eval_names_the_run_model_with_its_arguments(tmp_path, monkeypatch):
    stub_figures(monkeypatch)
    run = make_run(tmp_path)
    torch.manual_seed(0)
    model = create_model("wrn", num_classes=10, mean=(0.5,), std=(0.25,), depth=10,
                         widen_factor=1).eval()  # fmt: skip
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              run / "model.safetensors")  # fmt: skip
    meta = json.loads((run / "model.json").read_text())
    meta |= {"architecture": "wrn", "model_kwargs": {"depth": 10, "widen_factor": 1}}
    (run / "model.json").write_text(json.dumps(meta))
    assert main(["eval", str(run), "--n-examples", "4", "--batch-size", "4", "--quiet",
                 "--checks", "none"]) == 0  # fmt: skip
    data = json.loads((run / "eval-quick.json").read_text())
    assert data["architecture"] == "wrn"
    assert data["model_arguments"] == {"depth": 10, "widen_factor": 1, "dropout": 0.0}
    report = (run / "eval-quick.md").read_text()
    assert f"model {WRN}," in report  # the training line
    assert f"- architecture: `{WRN}`" in report  # what was measured
    assert "model wrn," not in report and "`wrn`" not in report
