"""The CLI as a user drives it: train a small run, evaluate it, load it; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml

import advkit
from advkit.cli import main
from tests.conftest import requires_fashion_mnist

pytestmark = requires_fashion_mnist

SMALL = ["--subset", "384", "--val-size", "128", "--val-examples", "64", "--epochs", "1",
         "--batch-size", "64", "--steps", "2", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--eps", "8/255", "--out", str(run_dir), *SMALL]) == 0
    return run_dir


def test_train_writes_the_run_folder(trained_run, capsys):
    meta = json.loads((trained_run / "model.json").read_text())
    assert meta["threat"]["eps"] == pytest.approx(8 / 255)
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert config["eps"] == pytest.approx(8 / 255) and config["out"] == str(trained_run)


def test_eval_then_load_model(trained_run, capsys):
    assert main(["eval", str(trained_run), "--n-examples", "64", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "pgd20" in out.lower() or "PGD-20" in out
    results = json.loads((trained_run / "eval-quick.json").read_text())
    assert 0 <= results["pgd20"] <= results["clean"] <= 1
    model = advkit.load_model(trained_run)
    assert not model.training
    logits = model(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10)


def test_refuses_to_overwrite_a_run(trained_run, capsys):
    assert main(["train", "--out", str(trained_run), *SMALL]) == 2
    assert "--resume" in capsys.readouterr().err


def test_resume_of_finished_run_is_a_no_op(trained_run, capsys):
    assert main(["train", "--resume", str(trained_run), "--quiet"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--eps", "-0.1"], "eps must be"),
        (["train", "--steps", "0"], "steps must be >= 1"),
        (["train", "--eps", "abc"], "8/255"),
        (["train", "--resume", "/nonexistent/run"], "not a run folder"),
        (["train", "--dataset", "mnist", "--data-dir", "/nonexistent/data"], "/nonexistent/data"),
        (["eval", "/nonexistent/run"], "/nonexistent/run"),
        (["train", "--subset", "256", "--grad-compression", "int8"], "on several workers"),
        (["train", "--optimizer", "lalr", "--lalr-clip", "10", "0"], "0 <= C_L <= C_U"),
        (["train", "--lalr-base", "sgd"], "add --optimizer lalr"),
        (["train", "--method", "trades", "--clean-weight", "1"], "does not take it"),
        (["train", "--grad-compression", "fp16", "--error-feedback"], "int8 or int8-2sided"),
        (["train", "--powersgd-rank", "4"], "add --grad-compression powersgd"),
    ],
)
def test_bad_input_is_one_clear_line(argv, message, capsys, tmp_path):
    assert (
        main(
            [*argv, "--out", str(tmp_path / "r")]
            if argv[0] == "train" and "--resume" not in argv
            else argv
        )
        == 2
    )
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_unknown_yaml_key(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epsilon: 0.1\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key 'epsilon'" in capsys.readouterr().err


def test_argparse_choices_list_the_registry(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--method", "nope"])
    assert "pgd" in capsys.readouterr().err


def test_python_dash_m_and_listings():
    for command in (["models"], ["datasets"], ["methods"], ["recipes"]):
        out = subprocess.run([sys.executable, "-m", "advkit", *command], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
        assert out.strip()
    assert "cnn-small" in subprocess.run([sys.executable, "-m", "advkit", "models"],
                                         capture_output=True, text=True).stdout  # fmt: skip
    recipes = subprocess.run([sys.executable, "-m", "advkit", "recipes"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    assert "dat-pgd             DAT-PGD (Zhang et al., UAI 2022) scaled to Fashion-MNIST" in recipes
