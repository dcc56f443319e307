"""Evaluating a model advkit did not train: ``advkit eval --model REF --weights FILE --dataset``
and ``advkit.evaluate(model, data)``. Weights are read without unpickling code, in the layouts
people save them; the report says where the model came from; nothing replaces another
evaluation; and the CLI and Python give the same numbers on the same weights."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import advkit
from advkit.cli import main
from advkit.data import TensorData
from advkit.errors import UserError
from advkit.evaluation.external import read_state_dict
from advkit.models import create_model
from tests.evaluation.run_folder import stub_figures
from tests.models.user_models import SIZE, write_model

MEAN, STD = 0.5, 0.25
N_TEST, FLIPPED = 40, 6
#: Options of every CLI evaluation here: cheap, no checks.
QUICK = ["--eps", "0.05", "--n-examples", str(N_TEST), "--batch-size", "20", "--checks", "none",
         "--quiet"]  # fmt: skip


@pytest.fixture(autouse=True)
def _no_figures(monkeypatch):
    stub_figures(monkeypatch)


@pytest.fixture
def setup(tmp_path: Path) -> dict:
    """A user's model file, random weights for it with normalization (MEAN, STD), and an .npz
    whose test labels are that model's predictions but for the first FLIPPED (clean accuracy
    exactly (N_TEST - FLIPPED) / N_TEST)."""
    model_file = write_model(tmp_path / "code")
    torch.manual_seed(0)
    model = create_model(f"{model_file}:build", num_classes=10, mean=(MEAN,), std=(STD,)).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (N_TEST, SIZE, SIZE), dtype=np.uint8)
    with torch.no_grad():
        labels = model(torch.from_numpy(images)[:, None].float() / 255).argmax(1).numpy()
    labels[:FLIPPED] = (labels[:FLIPPED] + 1) % 10
    labels[-1] = 9  # every class index occurs up to 9: the data has 10 classes
    data = tmp_path / "tiny.npz"
    np.savez(data, x_train=images, y_train=labels, x_test=images, y_test=labels)
    with torch.no_grad():
        clean = model(torch.from_numpy(images)[:, None].float() / 255).argmax(1).numpy()
    expected = float((clean == labels).mean())
    return {"file": model_file, "model": model, "data": data, "images": images,
            "labels": labels, "expected": expected, "dir": tmp_path}  # fmt: skip


def external(setup: dict, weights: Path, *extra: str) -> list[str]:
    return ["eval", "--model", f"{setup['file']}:build", "--weights", str(weights),
            "--dataset", "npz", "--data-dir", str(setup["data"]), *QUICK, *extra]  # fmt: skip


def saved(setup: dict, name: str, state: object) -> Path:
    path = setup["dir"] / name
    if name.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("name", "layout", "norm_args"),
    [
        ("bare.safetensors", "bare", ["--mean", "0.5", "--std", "1/4"]),
        ("bare.pt", "bare", ["--mean", "0.5", "--std", "0.25"]),
        ("advkit.pt", "normalized", []),  # advkit's own keys carry the normalization
        ("advkit.safetensors", "normalized", ["--mean", "0.5", "--std", "0.25"]),  # the same
        ("checkpoint.pth", "checkpoint", ["--mean", "0.5", "--std", "0.25"]),
        ("ddp.pt", "ddp", ["--mean", "0.5", "--std", "0.25"]),
    ],
)
def test_weights_in_every_layout_give_the_models_accuracy(setup, name, layout, norm_args):
    net, whole = setup["model"].net.state_dict(), setup["model"].state_dict()
    state = {
        "bare": net, "normalized": whole,
        "checkpoint": {"state_dict": net, "epoch": 3, "best": 0.5},
        "ddp": {f"module.{key}": value for key, value in net.items()},
    }[layout]  # fmt: skip
    weights = saved(setup, name, state)
    assert main(external(setup, weights, *norm_args)) == 0
    folder = weights.with_name(f"{weights.stem}-eval")  # the default: beside the weights
    data = json.loads((folder / "eval-quick-linf-0.05.json").read_text())
    assert data["clean"] == pytest.approx(setup["expected"])
    origin = data["model_origin"]
    assert origin["reference"] == f"{setup['file']}:build"
    assert origin["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert origin["normalization"] == {"mean": [MEAN], "std": [STD]}
    report = (folder / "eval-quick-linf-0.05.md").read_text()
    assert "not an advkit run" in report and origin["weights_sha256"] in report


def test_without_mean_and_std_the_model_normalizes_itself(setup):
    weights = saved(setup, "bare.safetensors", setup["model"].net.state_dict())
    assert main(external(setup, weights, "--out", str(setup["dir"] / "own"))) == 0
    data = json.loads((setup["dir"] / "own" / "eval-quick-linf-0.05.json").read_text())
    assert data["model_origin"]["normalization"] is None
    assert data["clean"] != pytest.approx(setup["expected"])  # the net saw raw pixels


def one_line(capsys, *parts: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advkit eval: error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_a_pickled_module_is_refused_unread(setup, capsys):
    weights = setup["dir"] / "whole.pt"
    torch.save(setup["model"], weights)  # the module object: loading it would run code
    assert main(external(setup, weights)) == 2
    one_line(capsys, "whole.pt holds pickled objects", "torch.save(model.state_dict(), PATH)")


@pytest.mark.parametrize(
    ("state", "extra", "parts"),
    [
        ("narrow", [], ["do not fit the model", "of another shape", "conv.weight (3, 1, 3, 3)"]),
        ("extra_key", [], ["1 unexpected key (extra.weight)"]),
        ("partial", [], ["2 missing keys (head.weight, head.bias)"]),
        ("optimizer", [], ["no state dict and has none under state_dict/model", "its keys: opt"]),
        ("tensor", [], ["holds 'Tensor', not a state dict"]),
        ("bare", ["--mean", "0.5"], ["--mean and --std go together"]),
        ("bare", ["--mean", "0.5", "0.5", "--std", "1", "1"], ["--mean has 2 values", "1 chan"]),
        ("whole", ["--mean", "0.2", "--std", "0.2"], ["holds advkit's own normalization"]),
    ],
)
def test_weights_that_do_not_fit_are_one_line(setup, capsys, state, extra, parts):
    net = setup["model"].net.state_dict()
    narrow = create_model(f"{setup['file']}:build", num_classes=10, width=3).net.state_dict()
    states = {
        "narrow": narrow, "extra_key": {**net, "extra.weight": torch.zeros(2)},
        "partial": {k: v for k, v in net.items() if not k.startswith("head.")},
        "optimizer": {"opt": {"lr": 0.1}}, "tensor": torch.zeros(3), "bare": net,
        "whole": setup["model"].state_dict(),
    }  # fmt: skip
    weights = saved(setup, f"{state}.pt", states[state])
    assert main(external(setup, weights, *extra)) == 2
    one_line(capsys, *parts)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval"], "give a run folder (advkit eval RUN), or a model advkit did not train"),
        (["eval", "--model", "cnn-small"], "--weights FILE is missing"),
        (["eval", "RUNDIR", "--model", "cnn-small"], "give either RUN or --model"),
        (["eval", "--model", "cnn-small", "--weights", "w.pt", "--eps", "0.1"], "--dataset NAME"),
        (["eval", "--model", "cnn-small", "--weights", "w.pt", "--dataset", "npz"], "--eps is"),
        (["eval", "--model", "cnn-small", "--weights", "{dir}/w.h5", "--dataset", "npz",
          "--data-dir", "{data}", "--eps", "0.1"], "is neither .safetensors nor a torch file"),
        (["eval", "--model", "cnn-small", "--weights", "{dir}/none.pt", "--dataset", "npz",
          "--data-dir", "{data}", "--eps", "0.1"], "none.pt does not exist"),
    ],
)  # fmt: skip
def test_wrong_options_are_one_line(setup, capsys, argv, message, tmp_path):
    (setup["dir"] / "w.h5").write_bytes(b"x")
    argv = [a.format(dir=setup["dir"], data=setup["data"]) for a in argv]
    assert main(argv) == 2
    one_line(capsys, message)


def test_external_evaluations_never_replace_each_other(setup, capsys):
    first = saved(setup, "w.safetensors", setup["model"].net.state_dict())
    out = ["--out", str(setup["dir"] / "evals")]
    assert main(external(setup, first, "--mean", "0.5", "--std", "0.25", *out)) == 0
    assert main(external(setup, first, *out)) == 0  # the same file, another normalization
    torch.manual_seed(5)
    other = create_model(f"{setup['file']}:build", num_classes=10).net.state_dict()
    second = saved(setup, "w2.safetensors", other)
    assert main(external(setup, second, *out)) == 0
    results = sorted((setup["dir"] / "evals").glob("*.json"))
    assert len(results) == 3
    origins = {json.dumps(json.loads(p.read_text())["model_origin"], sort_keys=True)
               for p in results}  # fmt: skip
    assert len(origins) == 3


def test_python_evaluate_gives_the_clis_accuracy_on_tensors_and_numpy(setup, tmp_path):
    weights = saved(setup, "bare.safetensors", setup["model"].net.state_dict())
    assert main(external(setup, weights, "--mean", "0.5", "--std", "0.25")) == 0
    folder = weights.with_name("bare-eval")
    cli = json.loads((folder / "eval-quick-linf-0.05.json").read_text())
    net = create_model(f"{setup['file']}:build", num_classes=10, mean=(0,), std=(1,)).net
    net.load_state_dict(read_state_dict(weights))
    images, labels = setup["images"][:, None], setup["labels"]
    kwargs = {"eps": 0.05, "mean": (MEAN,), "std": (STD,), "batch_size": 20, "checks": "none"}
    results = [
        advkit.evaluate(net, (images, labels), **kwargs),
        advkit.evaluate(net, (torch.from_numpy(images), torch.from_numpy(labels)), **kwargs),
        advkit.evaluate(net, (torch.from_numpy(images).float() / 255, labels), **kwargs),
        advkit.evaluate(net, (setup["images"], labels), **kwargs),  # (N, H, W): one channel
        advkit.evaluate(net, TensorData.from_numpy(images, labels), **kwargs),
        advkit.evaluate(net, "npz", data_dir=setup["data"], **kwargs),  # a dataset's test split
    ]
    for result in results:
        assert result.accuracies()["clean"] == pytest.approx(cli["clean"])
        assert result.accuracies()["clean"] == pytest.approx(setup["expected"])
    assert results[0].accuracies() == results[1].accuracies()
    assert results[0].to_dict()["attacks"] == cli["attacks"]
    written = results[0].write(tmp_path / "py")
    again = results[1].write(tmp_path / "py")  # the same evaluation: in place, not a copy
    assert written.paths[0] == again.paths[0] == tmp_path / "py" / "eval-quick-linf-0.05.json"
    data = json.loads(written.paths[0].read_text())
    assert data["model_origin"]["python"].endswith("NormalizedModel")
    assert "given to advkit.evaluate in Python" in (tmp_path / "py" / "eval-quick-linf-0.05.md"
                                                    ).read_text()  # fmt: skip


def test_python_evaluate_writes_with_out_dir_and_refuses_bad_data(setup, tmp_path):
    model = setup["model"]
    labels = torch.from_numpy(setup["labels"])
    floats = torch.from_numpy(setup["images"])[:, None].float()
    result = advkit.evaluate(model, (floats / 255, labels), eps=0.05, checks="none",
                             n_examples=10, out_dir=tmp_path / "o")  # fmt: skip
    assert result.result.n_examples == 10
    assert (tmp_path / "o" / "eval-quick-linf-0.05.json").is_file()
    cases = [
        ((floats, labels), "0..255\\? divide them by 255"),
        ((floats / 255 * 2 - 1, labels), "normalized already"),
        ((floats[:, 0, 0], labels), r"must be \(N, C, H, W\) or \(N, H, W\)"),
        ((floats / 255, labels[:5]), f"{len(labels)} images need {len(labels)} labels"),
        ((floats / 255, labels.float() + 0.5), "class indices"),
        ("no-such-dataset", "unknown dataset 'no-such-dataset'"),
        (42, "must be \\(images, labels\\) tensors"),
    ]
    for data, match in cases:
        with pytest.raises(UserError, match=match) as info:
            advkit.evaluate(model, data, eps=0.05)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"labels \(10\) are outside 0..9 \(the model has 10"):
        advkit.evaluate(model, (floats / 255, labels + 1), eps=0.05)  # the labels are wrong
