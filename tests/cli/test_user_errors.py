"""Every failure a user can cause ends in one line saying what is wrong and what to do.

Each kind of file a run folder holds is truncated or overwritten with garbage, then the command
that reads it runs in-process: exit status 2, exactly one line on stderr, no traceback (``-v``
shows it). Bugs still show their traceback, after one sentence saying so.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import advkit
from advkit import runs
from advkit.cli import main
from advkit.errors import CorruptFileError, UserError, WeightsMismatchError
from advkit.training.checkpoint import read_json
from tests.conftest import requires_fashion_mnist

pytestmark = requires_fashion_mnist

TRAIN = ["--subset", "256", "--val-size", "64", "--val-examples", "32", "--epochs", "1",
         "--batch-size", "64", "--steps", "1", "--val-steps", "1", "--quiet"]  # fmt: skip
EVAL = ["--n-examples", "8", "--batch-size", "8", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("user-errors") / "run"
    assert main(["train", "--eps", "8/255", "--out", str(run_dir), *TRAIN]) == 0
    return run_dir


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    """A fresh copy of the trained run, free to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(bytes(range(256)) * (len(data) // 256 + 1))


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith(f"advkit {command}: error: "), err
    return err


#: (file in the run folder, command reading it: "eval" or "resume").
READERS = [
    (runs.MODEL_FILE, "eval"),
    (runs.META_FILE, "eval"),
    (runs.CONFIG_FILE, "resume"),
    (f"{runs.CHECKPOINT_DIR}/{runs.LAST_CHECKPOINT}", "resume"),
    (f"{runs.CHECKPOINT_DIR}/{runs.BEST_WEIGHTS}", "resume"),
]


def _command(reader: str, run_dir: Path) -> list[str]:
    if reader == "eval":
        return ["eval", str(run_dir), *EVAL]
    return ["train", "--resume", str(run_dir), "--quiet"]


@pytest.mark.parametrize("how", ["truncated", "empty", "garbage"])
@pytest.mark.parametrize(("name", "reader"), READERS, ids=[name for name, _ in READERS])
def test_damaged_run_file_is_one_line(run_dir, capsys, name, reader, how) -> None:
    _damage(run_dir / name, how)
    command = _command(reader, run_dir)
    assert main(command) == 2
    err = _one_line_error(capsys, command[0])
    assert Path(name).name in err


def test_every_kind_of_run_file_is_covered(trained) -> None:
    """A new kind of file in the run folder needs a row in READERS (or a test of its own)."""
    kinds = {p.relative_to(trained).as_posix() for p in trained.rglob("*") if p.is_file()}
    covered = {name for name, _ in READERS} | {runs.METRICS_FILE, "checkpoints/best.json"}
    # Read by the layer_criticality analysis: tests/analysis/test_layer_criticality.py.
    covered |= {f"{runs.CHECKPOINT_DIR}/{runs.INIT_WEIGHTS}"}
    assert kinds - covered <= {"curves.png"}, kinds - covered


def test_messages_say_what_to_do(run_dir, capsys) -> None:
    _damage(run_dir / runs.MODEL_FILE, "truncated")
    assert main(["eval", str(run_dir), *EVAL]) == 2
    assert f"advkit train --resume {run_dir}" in capsys.readouterr().err
    _damage(run_dir / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT, "truncated")
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "last.pt is truncated or corrupt" in err and "train the run anew into another" in err
    assert "delete" not in err  # the run's model and other checkpoints are sound


def test_truncated_config_is_refused_rather_than_resumed_with_defaults(run_dir, capsys) -> None:
    """A config.yaml cut short may still be valid YAML: resuming it would silently train with
    default values for the keys it lost."""
    path = run_dir / runs.CONFIG_FILE
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    assert "lacks" in _one_line_error(capsys, "train")


def test_damaged_metrics_are_rewritten_on_resume(run_dir, capsys) -> None:
    _damage(run_dir / runs.METRICS_FILE, "garbage")
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert json.loads((run_dir / runs.METRICS_FILE).read_text().splitlines()[0])["epoch"] == 1


@pytest.mark.parametrize("name", ["eval-quick.json", runs.META_FILE, "checkpoints/best.json"])
def test_json_files_are_read_in_one_place(run_dir, name) -> None:
    """Whatever reads a JSON file of the run folder (model.json, eval results) through
    ``read_json`` gets a user error naming the file and what to do."""
    path = run_dir / name
    path.write_text('{"clean": 0.9, "pgd')
    with pytest.raises(CorruptFileError, match=rf"{path.name} is truncated or corrupt .*: \w+"):
        read_json(path)


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_eval_state_is_one_line(run_dir, capsys, monkeypatch, how) -> None:
    """Interrupt an evaluation in its first attack (the clean pass is saved), damage the saved
    state, then resume it."""
    load_model = runs.load_model

    def interrupted(*args, **kwargs):
        model = load_model(*args, **kwargs)

        def stop(module, inputs):
            if torch.is_grad_enabled():
                raise KeyboardInterrupt

        model.register_forward_pre_hook(stop)
        return model

    monkeypatch.setattr(runs, "load_model", interrupted)
    assert main(["eval", str(run_dir), *EVAL]) == 130
    monkeypatch.setattr(runs, "load_model", load_model)
    (state,) = run_dir.rglob("*.state.pt")
    _damage(state, how)
    capsys.readouterr()
    assert main(["eval", str(run_dir), *EVAL]) == 2
    err = _one_line_error(capsys, "eval")
    assert state.name in err and "--no-resume" in err


def test_verbose_shows_the_traceback(run_dir, capsys) -> None:
    _damage(run_dir / runs.MODEL_FILE, "truncated")
    assert main(["-v", "eval", str(run_dir), *EVAL]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "SafetensorError" in err
    assert err.splitlines()[-1].startswith("advkit eval: error: ")


def test_load_model_from_python_raises_a_user_error(run_dir) -> None:
    _damage(run_dir / runs.MODEL_FILE, "truncated")
    with pytest.raises(CorruptFileError, match=r"model.safetensors is truncated or corrupt"):
        advkit.load_model(run_dir)


# ----------------------------------------------------------------------------- weights
def _edit_meta(run_dir: Path, **changes) -> None:
    path = run_dir / runs.META_FILE
    path.write_text(json.dumps(json.loads(path.read_text()) | changes))


def _edit_weights(run_dir: Path, edit) -> None:
    path = run_dir / runs.MODEL_FILE
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: _edit_meta(d, num_classes=5), r"\(10, 100\) in the file, \(5, 100\) in the"),
        (lambda d: _edit_meta(d, architecture="cnn-madry"), "missing keys .* unexpected keys"),
        (lambda d: _edit_weights(d, lambda t: t.pop(sorted(t)[0])), "1 missing key"),
        (lambda d: _edit_weights(d, lambda t: t.update(extra=torch.ones(1))), "unexpected key"),
    ],
    ids=["shape", "architecture", "missing", "unexpected"],
)
def test_weights_that_do_not_fit_the_architecture(run_dir, capsys, change, message) -> None:
    change(run_dir)
    with pytest.raises(WeightsMismatchError, match=message):
        advkit.load_model(run_dir)
    assert main(["eval", str(run_dir), *EVAL]) == 2
    assert "do not fit" in _one_line_error(capsys, "eval")


@pytest.mark.parametrize(
    "meta", [[1, 2], {"architecture": "cnn-small"}, {"architecture": 3, "num_classes": 10,
                                                      "mean": [0.5], "std": [0.5]}],
)  # fmt: skip
def test_metadata_that_is_not_a_model_description(run_dir, capsys, meta) -> None:
    (run_dir / runs.META_FILE).write_text(json.dumps(meta))
    assert main(["eval", str(run_dir), *EVAL]) == 2
    assert runs.META_FILE in _one_line_error(capsys, "eval")


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("device", ["banana", "cuda:7", "cuda:x", "meta", ""])
def test_unknown_devices(trained, capsys, tmp_path, device) -> None:
    assert main(["eval", str(trained), *EVAL, "--device", device]) == 2
    assert "device" in _one_line_error(capsys, "eval")
    assert main(["train", "--out", str(tmp_path / "r"), *TRAIN, "--device", device]) == 2
    assert "device" in _one_line_error(capsys, "train")


def test_amp_dtype_without_amp_is_one_line(capsys, tmp_path) -> None:
    assert main(["train", "--out", str(tmp_path / "r"), *TRAIN, "--amp-dtype", "fp16"]) == 2
    assert "add --amp, or drop --amp-dtype" in _one_line_error(capsys, "train")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "argv",
    [["--n-examples", "abc"], ["--batch-size", "1.5"], ["--seed", "x"], ["--suite", "nope"]],
)
def test_impossible_option_values_are_one_line(trained, capsys, argv) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["eval", str(trained), *argv])
    assert stopped.value.code == 2
    _one_line_error(capsys, "eval")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--eps", "8"], "did you mean 8/255"),
        (["train", "--steps", "true"], "steps expects int"),
        (["train", "--epochs", "1e400"], "epochs expects int"),
        (["train", "--lr", "nan"], "finite"),
        (["eval", "RUN", "--eps", "8"], "--eps 8 is an L-inf radius"),
        (["eval", "RUN", "--eps", "0"], "--eps must be > 0"),
        (["eval", "RUN", "--eps", "1e400"], "finite"),
        (["eval", "RUN", "--sweep", "0,8"], "--sweep radius 8 .*did you mean 8/255"),
        (["eval", "RUN", "--norm", "l2", "--eps", "29"], r"L2 radius of 29 .*1x28x28"),
    ],
)
def test_budgets_that_cannot_be_right(trained, capsys, tmp_path, argv, message) -> None:
    argv = [str(trained) if arg == "RUN" else arg for arg in argv]
    if argv[0] == "train":  # the option under test comes last, so it wins over TRAIN's
        argv = ["train", "--out", str(tmp_path / "r"), *TRAIN, *argv[1:]]
    assert main([*argv, *EVAL] if argv[0] == "eval" else argv) == 2
    err = _one_line_error(capsys, argv[0])
    assert re.search(message, err), err


# ----------------------------------------------------------------------------- the boundary
def test_os_errors_are_one_line(trained, capsys, monkeypatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(trained / runs.META_FILE))

    monkeypatch.setattr(runs, "load_metadata", denied)
    assert main(["eval", str(trained), *EVAL]) == 2
    assert "Permission denied" in _one_line_error(capsys, "eval")


def test_bugs_still_show_a_traceback_after_saying_so(trained, capsys, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise TypeError("an internal mistake")

    monkeypatch.setattr(runs, "load_metadata", broken)
    with pytest.raises(TypeError, match="an internal mistake"):
        main(["eval", str(trained), *EVAL])
    err = capsys.readouterr().err
    assert "internal error" in err and "bug" in err and "an internal mistake" in err


def test_the_error_classes_keep_their_old_bases() -> None:
    from advkit.config import ConfigError
    from advkit.data import DataError, DataNotFoundError

    assert issubclass(ConfigError, UserError) and issubclass(ConfigError, ValueError)
    assert issubclass(runs.RunError, UserError) and issubclass(runs.RunError, FileNotFoundError)
    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)
    assert issubclass(DataNotFoundError, FileNotFoundError)
