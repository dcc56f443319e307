"""A model with no autograd path from output to input (a forward under ``torch.no_grad()``, or a
detached input) is evaluated, not crashed on: the gradient attacks see a zero gradient, Square
still runs, and the zero-gradient check flags it as gradient-masked with the reason; through
``advkit.evaluate`` and through ``advkit eval`` on a run folder and on a weights file. The
analyses that need an input gradient skip with the same reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

import advkit
from advkit.alignment import measure_alignment
from advkit.analysis.base import AnalysisSkipped
from advkit.analysis.input_gradients import input_gradients
from advkit.analysis.loss_landscape import adversarial_direction
from advkit.attacks.gradients import NO_INPUT_GRAPH, NoInputGradientError
from advkit.cli import main
from advkit.models import create_model
from advkit.noise import sample_noise
from tests.evaluation.run_folder import stub_figures

MODES = ["no_grad", "detach"]
#: A user's model file: the same linear classifier, gradient-less in two ways.
MODEL_FILE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, mode):
        super().__init__()
        self.mode = mode
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        if self.mode == "no_grad":
            with torch.no_grad():
                return self.fc(x.flatten(1))
        return self.fc(x.detach().flatten(1))


def no_grad(num_classes, in_channels=1):
    return Net(num_classes, "no_grad")


def detach(num_classes, in_channels=1):
    return Net(num_classes, "detach")
"""


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    stub_figures(monkeypatch)


def built(folder: Path, mode: str) -> tuple[Path, nn.Module]:
    """The model file in ``folder`` and its ``mode`` model (random weights, seed 0)."""
    path = folder / "gradless.py"
    path.write_text(MODEL_FILE)
    torch.manual_seed(0)
    model = create_model(f"{path}:{mode}", num_classes=5, mean=(0.0,), std=(1.0,)).eval()
    return path, model


def labelled(model: nn.Module, n: int = 32) -> tuple[Tensor, Tensor]:
    """``n`` random 8x8 images labelled with the model's predictions (clean accuracy 1)."""
    inputs = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return inputs, model(inputs).argmax(1)


def assert_flagged(data: dict) -> None:
    assert data["clean"] == 1.0
    runs = {run["name"]: run for run in data["checks"]["runs"]}
    assert runs["zero_gradient"]["fired"] and runs["black_box"]["skipped"] is None
    assert any(NO_INPUT_GRAPH in warning and "gradient masked" in warning
               for warning in data["warnings"])  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_python_evaluate_flags_the_model_and_square_runs(tmp_path, mode):
    _, model = built(tmp_path, mode)
    inputs, labels = labelled(model)
    evaluation = advkit.evaluate(model, (inputs, labels), eps=0.3, suite="autoattack",
                                 checks="fast", out_dir=tmp_path / "out")  # fmt: skip
    data = evaluation.to_dict()
    assert_flagged(data)
    assert data["square"] < data["apgd_ce"]  # the black-box attack breaks what gradients cannot
    assert not list((tmp_path / "out").glob("*.state.pt"))


@pytest.mark.parametrize("mode", MODES)
def test_cli_on_a_run_and_on_weights_flags_the_model(tmp_path, capsys, mode):
    path, model = built(tmp_path, mode)
    inputs, labels = labelled(model)
    images = (inputs[:, 0] * 255).round().to(torch.uint8).numpy()
    with torch.no_grad():  # the labels of the rounded images the CLI reads
        labels = model(torch.from_numpy(images)[:, None].float() / 255).argmax(1).numpy()
    labels[-5:] = np.arange(5)  # every class occurs: the data has 5 classes
    data_file = tmp_path / "tiny.npz"
    np.savez(data_file, x_train=images, y_train=labels, x_test=images, y_test=labels)
    run = tmp_path / "run"
    run.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              run / "model.safetensors")  # fmt: skip
    meta = {"architecture": f"{path}:{mode}", "num_classes": 5, "mean": [0.0], "std": [1.0],
            "input_shape": [1, 8, 8], "dataset": "npz", "data_dir": str(data_file),
            "threat": {"norm": "linf", "eps": 0.2}, "method": {"name": "pgd"}}  # fmt: skip
    (run / "model.json").write_text(json.dumps(meta))
    common = ["--n-examples", "32", "--batch-size", "16", "--quiet"]
    assert main(["eval", str(run), *common]) == 0
    report = json.loads((run / "eval-quick.json").read_text())
    assert_flagged({**report, "clean": 1.0})  # a few labels were set to other classes
    assert not list(run.glob("*.state.pt"))
    assert "gradient masked" in (run / "eval-quick.md").read_text()
    assert "gradient masked" in capsys.readouterr().out
    weights = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(weights))
    assert main(["eval", "--model", f"{path}:{mode}", "--weights", str(weights), "--dataset",
                 "npz", "--data-dir", str(data_file), "--eps", "0.2", *common]) == 0  # fmt: skip
    external = json.loads((tmp_path / "weights-eval" / "eval-quick-linf-0.2.json").read_text())
    assert_flagged({**external, "clean": 1.0})
    assert external["pgd20"] == report["pgd20"]


@pytest.mark.parametrize("mode", MODES)
def test_analyses_that_need_an_input_gradient_skip_or_say_why(tmp_path, mode):
    _, model = built(tmp_path, mode)
    inputs, labels = labelled(model, 4)
    with pytest.raises(AnalysisSkipped, match=r"torch\.no_grad"):
        input_gradients(model, inputs, labels, batch_size=4)
    with pytest.raises(AnalysisSkipped, match=r"torch\.no_grad"):
        adversarial_direction(model, inputs, labels, "linf")
    noise = sample_noise(0, 0, torch.arange(4), 7)
    with pytest.raises(NoInputGradientError, match=r"gradient alignment needs .* torch\.no_grad"):
        measure_alignment(model, inputs, labels, eps=0.1, norm="linf", noise=noise)
