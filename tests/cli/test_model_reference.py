"""``advkit train --model path/to/file.py:factory`` and ``--model package.module:factory``: one-line
errors for every mistake, and a run folder that rebuilds the model in a new process after the
original file is gone (eval, load_model, resume), and with two workers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from advkit.cli import main
from tests.models.user_models import tiny_npz, write_model

REPO = Path(__file__).resolve().parents[2]
TRAIN = ["--dataset", "npz", "--val-size", "32", "--val-examples", "32", "--epochs", "1",
         "--batch-size", "32", "--steps", "1", "--val-steps", "1", "--quiet"]  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tiny_npz(tmp_path / "tiny.npz")


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return write_model(tmp_path / "code")


def advkit(*args: str, cwd: Path, pythonpath: str = "") -> subprocess.CompletedProcess:
    """``python -m advkit ARGS`` in a fresh process (advkit's own source on the path)."""
    path = os.pathsep.join(p for p in (str(REPO / "src"), pythonpath) if p)
    env = os.environ | {"PYTHONPATH": path, "OMP_NUM_THREADS": "1",
                        "ADVKIT_DIST_TIMEOUT": "60", "ADVKIT_RDZV_TIMEOUT": "60"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "advkit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def one_line_error(err: str, *parts: str) -> None:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("advkit train: error: "), err
    for part in parts:
        assert part in lines[0], (part, lines[0])


@pytest.mark.parametrize(
    ("model", "extra", "message"),
    [
        ("{code}/gone.py:build", [], "gone.py does not exist"),
        ("{code}/notes.txt:build", [], "notes.txt is not a .py file"),
        ("{code}/broken.py:build", [], "fails to import (SyntaxError: invalid syntax at"),
        ("{code}/importer.py:build", [], "ModuleNotFoundError: No module named 'not_there_at_all'"),
        ("no_such_pkg.nets:build", [], "module no_such_pkg.nets is not importable"),
        ("{code}/my_net.py:nope", [], "defines no 'nope'; it defines TinyCNN, anything, build"),
        ("{code}/my_net.py:WIDTH", [], "WIDTH is an int, not a function or class"),
        ("{code}/my_net.py", [], "names a file but no factory"),
        ("{code}/my_net.py:fails", [], "raised ValueError: width 4 is too narrow at"),
        ("{code}/my_net.py:build", ["--model-arg", "width=wide"], "takes width as int"),
        ("{code}/my_net.py:build", ["--model-arg", "depth=2"], "does not take the options"),
        ("{code}/my_net.py:build", ["--model-arg", "num_classes=3"], "set by advkit"),
        ("{code}/my_net.py:needs_depth", [], "needs depth: give each as --model-arg"),
        ("{code}/my_net.py:not_a_module", [], "returned a tuple, not a torch.nn.Module"),
        ("{code}/my_net.py:wrong_output", [], "returns shape (2, 11) for a batch of 2 1x12x12"),
        ("{code}/my_net.py:wrong_input", [], "fails on a batch of 2 1x12x12 images"),
    ],
)
def test_every_mistake_is_one_line_saying_what_to_change(
    model, extra, message, model_file, data, tmp_path, capsys
):
    code = model_file.parent
    (code / "notes.txt").write_text("not python\n")
    (code / "broken.py").write_text("import torch\n\ndef build(:\n    pass\n")
    (code / "importer.py").write_text("import not_there_at_all\n")
    run = tmp_path / "run"
    argv = ["train", "--model", model.format(code=code), *extra, "--data-dir", str(data),
            "--out", str(run), *TRAIN]  # fmt: skip
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err, message)
    assert not (run / "checkpoints").exists()  # refused before any training


def test_a_registered_model_refuses_arguments_advkit_sets(data, tmp_path, capsys):
    """--model-arg num_classes used to crash create_model (a duplicate keyword, a traceback)."""
    argv = ["train", "--model", "cnn-small", "--model-arg", "num_classes=3", "--data-dir",
            str(data), "--out", str(tmp_path / "run"), *TRAIN]  # fmt: skip
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err, "num_classes is set by advkit", "drop --model-arg")


def test_a_file_run_is_rebuilt_from_its_copy_after_the_file_is_gone(model_file, data, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "--model", f"{model_file}:build", "--model-arg", "width=3", "--data-dir",
            str(data), "--out", str(run), *TRAIN]  # fmt: skip
    assert main(argv) == 0
    meta = json.loads((run / "model.json").read_text())
    copy = run / "model_source" / "my_net.py"
    assert copy.read_bytes() == model_file.read_bytes()
    assert meta["architecture"] == f"{model_file}:build"
    assert meta["model_kwargs"] == {"width": 3}
    assert meta["model_source"] == {
        "file": "model_source/my_net.py", "factory": "build",
        "sha256": hashlib.sha256(model_file.read_bytes()).hexdigest(),
        "original": str(model_file.resolve()),
    }  # fmt: skip
    model_file.rename(tmp_path / "moved.py")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    done = advkit("eval", str(run), "--n-examples", "16", "--batch-size", "16", "--checks",
                  "none", "--quiet", cwd=elsewhere)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (run / "eval-quick.json").is_file()
    code = (f"import advkit, torch; m = advkit.load_model({str(run)!r}); "
            "print(m.net.conv.out_channels, tuple(m(torch.rand(2, 1, 12, 12)).shape))")  # fmt: skip
    env = os.environ | {"PYTHONPATH": str(REPO / "src")}
    loaded = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True,
                            text=True, env=env)  # fmt: skip
    assert loaded.stdout.split() == ["3", "(2,", "10)"], loaded.stderr
    resumed = advkit("train", "--resume", str(run), "--epochs", "2", "--quiet", cwd=elsewhere)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "model.json").read_text())["epochs"] == 2
    assert copy.read_bytes() == (tmp_path / "moved.py").read_bytes()


def test_a_module_reference_needs_its_module_importable(tmp_path, data, capsys):
    package = tmp_path / "pkgs" / "mynets"
    write_model(package, "nets.py")
    (package / "__init__.py").write_text("")
    run = tmp_path / "run"
    pythonpath = str(tmp_path / "pkgs")
    trained = advkit("train", "--model", "mynets.nets:build", "--data-dir", str(data), "--out",
                     str(run), *TRAIN, cwd=tmp_path, pythonpath=pythonpath)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((run / "model.json").read_text())
    assert meta["architecture"] == "mynets.nets:build"
    assert meta["model_source"] == {"module": "mynets.nets", "factory": "build"}
    assert not (run / "model_source").exists()
    evaluated = advkit("eval", str(run), "--n-examples", "8", "--batch-size", "8", "--checks",
                       "none", "--quiet", cwd=tmp_path, pythonpath=pythonpath)  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    assert main(["eval", str(run), "--quiet"]) == 2  # here mynets is not on the path
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "advkit eval: error: module mynets.nets is not importable" in err


def test_two_workers_train_a_file_model(model_file, data, tmp_path, capsys):
    run = tmp_path / "run"
    done = advkit("train", "--nproc", "2", "--model", f"{model_file}:build", "--data-dir",
                  str(data), "--out", str(run), *TRAIN, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    meta = json.loads((run / "model.json").read_text())
    assert meta["workers"] == 2 and meta["model_source"]["file"] == "model_source/my_net.py"
    assert set(load_file(str(run / "model.safetensors"))) >= {"net.conv.weight", "net.head.bias"}
    # refused once, before any worker starts
    argv = ["train", "--nproc", "2", "--model", f"{model_file}:nope", "--data-dir", str(data),
            "--out", str(tmp_path / "r2"), *TRAIN]  # fmt: skip
    assert main(argv) == 2
    one_line_error(capsys.readouterr().err, "defines no 'nope'")
