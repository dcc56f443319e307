"""`advkit train --resume RUN` with options: resumable ones are applied and recorded, the others
are refused in one line unless they equal the run's own value."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml

from advkit.cli import main
from tests.conftest import FASHION_DIR, requires_fashion_mnist

pytestmark = requires_fashion_mnist

SMALL = ["--subset", "256", "--val-size", "64", "--val-examples", "32", "--epochs", "1",
         "--batch-size", "64", "--steps", "1", "--val-steps", "1", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished one-epoch run whose data is read through a link (so it can be "moved")."""
    root = tmp_path_factory.mktemp("resume")
    (root / "data").symlink_to(FASHION_DIR)
    run = root / "run"
    assert main(["train", "--data-dir", str(root / "data"), "--out", str(run), *SMALL]) == 0
    return run


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    config["out"] = str(copy)
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return copy


def _config(run):
    return yaml.safe_load((run / "config.yaml").read_text())


def _resumes(run):
    path = run / "resumes.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_more_epochs_train_the_extra_epochs_and_are_recorded(run, capsys):
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    epochs = [
        json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2]
    assert _config(run)["epochs"] == 2
    assert json.loads((run / "model.json").read_text())["epochs"] == 2
    (entry,) = _resumes(run)
    assert entry["changes"] == {"epochs": [1, 2]} and entry["epoch"] == 1
    capsys.readouterr()
    # fewer epochs than trained: refused, nothing changes
    assert main(["train", "--resume", str(run), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--epochs 1 is fewer than the 2 passes" in err
    assert _config(run)["epochs"] == 2 and len(_resumes(run)) == 1


def test_moved_data_dir_is_used_and_recorded(run, trained, capsys):
    old = trained.parent / "data"
    moved = trained.parent / "data-moved"
    os.rename(old, moved)
    try:
        assert main(["train", "--resume", str(run), "--data-dir", str(moved), "--quiet"]) == 0
    finally:
        os.rename(moved, old)
    assert _config(run)["data_dir"] == str(moved)
    assert json.loads((run / "model.json").read_text())["data_dir"] == str(moved)
    assert _resumes(run)[0]["changes"] == {"data_dir": [str(old), str(moved)]}


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--eps", "0.2"], "--eps 0.2 differs from the run's 0.1: a resumed run keeps its threat"),
        (["--method", "fast"], "--method fast differs from the run's pgd"),
        (["--seed", "5"], "--seed 5 differs from the run's 0"),
        (["--batch-size", "32"], "--batch-size 32 differs from the run's 64"),
        (["--model", "cnn-madry"], "--model cnn-madry differs from the run's cnn-small"),
        (["--no-normalize"], "--normalize false differs from the run's true"),
        (["--subset", "128"], "--subset 128 differs from the run's 256"),
        (
            ["--eps", "0.2", "--lr", "0.5"],
            "0.1, --lr 0.5 from its 0.1: a resumed run keeps its "
            "threat model and optimization; start a new run with --out",
        ),
    ],
)
def test_options_that_change_what_the_run_is_are_refused(run, argv, said, capsys):
    before = (run / "config.yaml").read_text()
    assert main(["train", "--resume", str(run), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "Traceback" not in err
    assert (run / "config.yaml").read_text() == before and not _resumes(run)


def test_options_equal_to_the_run_s_own_pass(run, capsys):
    same = ["--eps", "0.1", "--method", "pgd", "--seed", "0", "--batch-size", "64",
            "--steps", "1", "--subset", "256", "--model", "cnn-small", "--normalize"]  # fmt: skip
    assert main(["train", "--resume", str(run), *same, "--quiet"]) == 0
    assert _resumes(run)[0]["changes"] == {}


def test_config_file_on_resume_is_compared_too(run, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    other.write_text("eps: 8/255\nepochs: 2\n")
    assert main(["train", "--resume", str(run), "--config", str(other)]) == 2
    assert "--eps 0.0313725 (8/255) differs from the run's 0.1" in capsys.readouterr().err
    longer = tmp_path / "longer.yaml"
    longer.write_text("eps: 0.1\nepochs: 2\nmethod: pgd\n")
    assert main(["train", "--resume", str(run), "--config", str(longer), "--quiet"]) == 0
    assert _config(run)["epochs"] == 2


def test_out_other_than_the_resumed_folder_is_refused(run, tmp_path, capsys):
    assert main(["train", "--resume", str(run), "--out", str(tmp_path / "elsewhere")]) == 2
    assert "is not the resumed run's folder" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere").exists()


def test_a_moved_run_folder_records_its_new_place(run, tmp_path):
    moved = tmp_path / "moved"
    run.rename(moved)
    assert main(["train", "--resume", str(moved), "--quiet"]) == 0
    assert _config(moved)["out"] == str(moved)


def test_a_run_written_before_amp_dtype_resumes_and_keeps_its_precision(run, capsys):
    """Its config.yaml has no amp_dtype key: it loads (as what it ran: float32, or bf16 with
    --amp), and the precision may not change on resume."""
    config = _config(run)
    del config["amp_dtype"]
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert _config(run)["amp_dtype"] is None
    capsys.readouterr()
    argv = ["train", "--resume", str(run), "--amp", "--amp-dtype", "fp16", "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--amp-dtype fp16 from its none" in err
