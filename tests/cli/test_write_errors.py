"""A full disk (or a read-only or forbidden folder) is one line naming the file, never "a bug",
and loses nothing: training keeps a resumable last checkpoint, an evaluation prints its results
before writing and leaves its JSON or nothing, no figure or report without it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from advkit.cli import main, user_message
from advkit.evaluation.state import EvalState
from advkit.training.checkpoint import load_state
from tests.conftest import requires_fashion_mnist
from tests.disk_faults import file_size_limit, refuse_writes
from tests.evaluation.run_folder import listing, make_run, stub_figures

TRAIN = ["--subset", "256", "--val-size", "64", "--val-examples", "32", "--epochs", "2",
         "--batch-size", "64", "--steps", "1", "--val-steps", "1", "--quiet"]  # fmt: skip
EVAL = ["--n-examples", "8", "--batch-size", "8", "--checks", "none", "--quiet"]


def one_line_error(err: str, command: str) -> str:
    assert "Traceback" not in err and "bug" not in err, err
    assert err.count("\n") == 1 and err.startswith(f"advkit {command}: error: "), err
    return err.strip()


def stray_files(folder: Path) -> list[str]:
    return [path.name for path in folder.rglob("*.tmp")]


@requires_fashion_mnist
def test_training_onto_a_full_disk_keeps_the_last_checkpoint_and_says_how_to_go_on(
    tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    refuse_writes(monkeypatch, lambda name: name == "last.pt", after=1)  # epoch 2's checkpoint
    assert main(["train", "--out", str(run), *TRAIN]) == 2
    err = one_line_error(capsys.readouterr().err, "train")
    assert f"cannot write {run / 'checkpoints' / 'last.pt'}: no space is left" in err
    assert "free there, about " in err and " needed)" in err
    assert f"then continue with `advkit train --resume {run}` from its last checkpoint" in err
    assert "(intact, after epoch 1)" in err
    assert load_state(run / "checkpoints" / "last.pt")["epoch"] == 1
    assert stray_files(run) == []
    monkeypatch.undo()
    config = (run / "config.yaml").read_bytes()
    refuse_writes(monkeypatch, lambda name: name == "config.yaml", room=100)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    one_line_error(capsys.readouterr().err, "train")
    assert (run / "config.yaml").read_bytes() == config  # was rewritten in place, truncated
    monkeypatch.undo()
    assert main(["train", "--resume", str(run), "--quiet"]) == 0
    assert load_state(run / "checkpoints" / "last.pt")["epoch"] == 2


@requires_fashion_mnist
def test_a_checkpoint_the_kernel_refuses_is_not_called_a_bug(tmp_path, capsys):
    """torch.save's own error for a refused write (RuntimeError "unexpected pos") was "internal
    error, a bug in advkit" with a traceback."""
    run = tmp_path / "run"
    with file_size_limit(1_000_000):  # the weights (670 kB) fit, the checkpoint (1.3 MB) not
        code = main(["train", "--out", str(run), *TRAIN, "--epochs", "1"])
    assert code == 2
    err = one_line_error(capsys.readouterr().err, "train")
    assert f"cannot write {run / 'checkpoints' / 'last.pt'}: File too large" in err
    assert "then start the run again (it has no checkpoint yet)" in err
    assert stray_files(run) == [] and not (run / "checkpoints" / "last.pt").exists()


@pytest.fixture
def run_dir(tmp_path, monkeypatch) -> Path:
    stub_figures(monkeypatch)
    return make_run(tmp_path)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_eval_prints_its_results_and_leaves_nothing_half_written(run_dir, monkeypatch, capsys,
                                                                 code):  # fmt: skip
    out = run_dir.parent / "full"
    refuse_writes(monkeypatch, lambda name: name.startswith("eval-"), code)
    assert main(["eval", str(run_dir), "--out", str(out), *EVAL]) == 2
    captured = capsys.readouterr()
    err = one_line_error(captured.err, "eval")
    assert "robust accuracy" in captured.out and "worst_case" in captured.out
    assert f"cannot write {out / 'eval-quick.json'}: " in err
    if code == errno.ENOSPC:
        assert "free there" in err
    # No figure, report or temporary file without the JSON (the output lock removes the folder
    # it created when nothing was written into it).
    assert not out.exists() or sorted(os.listdir(out)) == []


def test_eval_whose_figure_cannot_be_written_keeps_its_json_and_says_where(run_dir, monkeypatch,
                                                                          capsys):  # fmt: skip
    refuse_writes(monkeypatch, lambda name: name.endswith(".png"))
    assert main(["eval", str(run_dir), *EVAL]) == 2
    err = one_line_error(capsys.readouterr().err, "eval")
    assert f"cannot write {run_dir / 'eval-quick-examples.png'}: no space is left" in err
    assert f"the results are in {run_dir / 'eval-quick.json'}" in err
    assert (run_dir / "eval-quick.json").is_file() and (run_dir / "eval-quick.md").is_file()
    assert stray_files(run_dir) == [] and not list(run_dir.glob("*.png"))


def test_eval_state_that_cannot_be_saved_does_not_stop_the_evaluation(run_dir, monkeypatch,
                                                                       capsys, caplog):  # fmt: skip
    refuse_writes(monkeypatch, lambda name: name.endswith(".state.pt"))
    assert main(["eval", str(run_dir), *EVAL]) == 0
    assert (run_dir / "eval-quick.json").is_file()
    assert "the evaluation goes on without saving its progress" in caplog.text
    assert not list(run_dir.glob("*.state.pt")) and stray_files(run_dir) == []


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.ENOSPC, "no space is left on its file system ("),
        (errno.EROFS, "its file system is read-only"),
    ],
)
def test_an_os_error_only_a_write_raises_names_its_file_and_what_to_do(tmp_path, code, says):
    """Wherever it comes from (a lock file, a library), not just advkit's own writes."""
    error = OSError(code, os.strerror(code), str(tmp_path / "x"))
    assert user_message(error).startswith(f"cannot write {tmp_path / 'x'}: {says}")
    assert user_message(OSError(errno.ENOENT, "No such file or directory", "y")) == (
        "No such file or directory: y"
    )


def test_a_displaced_evaluation_that_cannot_be_moved_stays_whole(run_dir, monkeypatch, capsys):
    """A larger evaluation moves the smaller one aside: its report is rewritten first, so a
    refusal leaves every file where it was (the figures were renamed before, losing the links)."""
    assert main(["eval", str(run_dir), *EVAL]) == 0
    before = listing(run_dir)
    moved = "eval-quick-n8-b8-checks-none.md"
    refuse_writes(monkeypatch, lambda name: name == moved)
    assert main(["eval", str(run_dir), *EVAL, "--n-examples", "16"]) == 2
    err = one_line_error(capsys.readouterr().err, "eval")
    assert f"cannot write {run_dir / moved}: no space is left" in err
    kept = {name: size for name, size in listing(run_dir).items() if ".state" not in name}
    assert kept == before  # and the attacks' progress, for the evaluation run again


def test_the_attacks_progress_stays_until_the_json_is_written(run_dir, monkeypatch, capsys):
    """The saved progress was deleted once the attacks ended, before the JSON was written: a
    full disk then cost the whole evaluation. Now the evaluation run again resumes from it."""
    refuse_writes(monkeypatch, lambda name: name.endswith(".json"))
    assert main(["eval", str(run_dir), *EVAL]) == 2
    err = one_line_error(capsys.readouterr().err, "eval")
    assert err.endswith("; then run it again: it resumes from its saved progress")
    states = list(run_dir.glob("eval-*.state.pt"))
    assert len(states) == 1 and not list(run_dir.glob("eval-*.json"))
    monkeypatch.undo()
    stub_figures(monkeypatch)
    resumed = []
    monkeypatch.setattr(EvalState, "open", _recording(EvalState.open, resumed))
    assert main(["eval", str(run_dir), *EVAL]) == 0
    assert resumed == [True]  # every chunk done: no attack ran again
    assert (run_dir / "eval-quick.json").is_file() and not list(run_dir.glob("*.state.pt"))


def _recording(open_state, resumed):
    def recording(path, key):
        state = open_state(path, key)
        resumed.append(bool(state.done))
        return state

    return recording
