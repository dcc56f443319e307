"""Any checkpoint of a run is evaluated and analysed with the run's metadata, says which epoch it
holds and writes beside, never over, the run's own results; no advice deletes sound data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from advkit import runs
from advkit.cli import main
from advkit.run_checkpoints import find_checkpoint
from tests.cli.test_run_lock import held_elsewhere
from tests.conftest import requires_fashion_mnist

pytestmark = requires_fashion_mnist

TRAIN = ["--subset", "256", "--val-size", "64", "--val-examples", "32", "--epochs", "2",
         "--batch-size", "64", "--steps", "1", "--val-steps", "1", "--quiet",
         "--select", "last"]  # fmt: skip
EVAL = ["--n-examples", "8", "--batch-size", "8", "--checks", "none", "--quiet"]
CHECKPOINTS = {"best": runs.BEST_WEIGHTS, "last": runs.LAST_CHECKPOINT, "init": runs.INIT_WEIGHTS}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("checkpoints") / "run"
    assert main(["train", "--eps", "8/255", "--out", str(run_dir), *TRAIN]) == 0
    return run_dir


@pytest.fixture
def run_dir(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


def _checkpoint(run: Path, name: str) -> Path:
    return run / runs.CHECKPOINT_DIR / CHECKPOINTS[name]


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_eval_of_a_checkpoint_says_its_epoch_and_writes_beside_the_run(run_dir, capsys, name):
    assert main(["eval", str(run_dir), *EVAL]) == 0
    own = (run_dir / "eval-quick.json").read_bytes()
    capsys.readouterr()
    assert main(["eval", str(_checkpoint(run_dir, name)), *EVAL]) == 0
    out = capsys.readouterr().out
    epoch = {"best": json.loads((run_dir / "checkpoints/best.json").read_text())["epoch"],
             "last": 2, "init": 0}[name]  # fmt: skip
    said = "before training" if name == "init" else f"epoch {epoch})"
    assert f"evaluating run checkpoint {name} (" in out and said in out, out
    result = json.loads((run_dir / f"checkpoint-{name}" / "eval-quick.json").read_text())
    assert result["checkpoint"]["name"] == name and result["checkpoint"]["epoch"] == epoch
    assert (run_dir / "eval-quick.json").read_bytes() == own  # the run's own result untouched


def test_last_checkpoint_holds_the_weights_the_run_ended_with(run_dir):
    """--select last: model.safetensors is the last epoch, as last.pt holds it."""
    final = runs.load_model(run_dir).state_dict()
    last = runs.load_model(_checkpoint(run_dir, "last")).state_dict()
    assert final.keys() == last.keys()
    assert all(torch.equal(final[key], last[key]) for key in final)
    best = runs.load_model(_checkpoint(run_dir, "best")).state_dict()
    stored = load_file(str(_checkpoint(run_dir, "best")))
    assert all(torch.equal(best[key], stored[key]) for key in stored)
    assert "selected_epoch" not in runs.load_metadata(_checkpoint(run_dir, "best"))


def test_analyze_of_a_checkpoint_writes_beside_the_run(run_dir, capsys):
    best = _checkpoint(run_dir, "best")
    assert main(["analyze", str(best), "--only", "per_class", "--examples", "8"]) == 0
    assert "analyzing run checkpoint best (epoch" in capsys.readouterr().out
    assert list((run_dir / "checkpoint-best").glob("analysis*.json"))
    assert not list(run_dir.glob("analysis*"))


def test_a_missing_checkpoint_lists_the_ones_there(run_dir, capsys):
    assert main(["eval", str(run_dir / runs.CHECKPOINT_DIR / "epoch5.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint at" in err and "best.safetensors, init.safetensors, last.pt" in err
    assert main(["eval", str(run_dir / runs.CHECKPOINT_DIR)]) == 2  # the folder: name one
    assert "is a run's checkpoints folder: name one checkpoint" in capsys.readouterr().err


def test_weights_that_do_not_fit_the_metadata_are_not_to_be_deleted(run_dir, capsys):
    meta = json.loads((run_dir / runs.META_FILE).read_text())
    (run_dir / runs.META_FILE).write_text(json.dumps({**meta, "num_classes": 7}))
    for path in (run_dir, _checkpoint(run_dir, "best")):
        assert main(["eval", str(path), *EVAL]) == 2
        err = capsys.readouterr().err
        assert "come from different models" in err and "delete" not in err, err


@pytest.mark.parametrize(
    "name",
    [runs.MODEL_FILE, runs.META_FILE, runs.CONFIG_FILE, runs.METRICS_FILE, "checkpoints/last.pt",
     "checkpoints/best.safetensors", "checkpoints/best.json", "checkpoints/init.safetensors"],
)  # fmt: skip
def test_no_repair_hint_deletes_a_folder(trained, name):
    hint = runs.repair_hint(trained / name)
    assert str(trained / runs.CHECKPOINT_DIR) not in hint and "start the run over" not in hint
    if "delete" in hint:  # the damaged file alone, one that nothing needs or that is rebuilt
        assert "delete it" in hint and Path(name).name in {
            runs.BEST_WEIGHTS,
            "best.json",
            runs.INIT_WEIGHTS,
        }, hint


def test_a_run_being_trained_names_its_trainer(run_dir, capsys):
    (run_dir / runs.MODEL_FILE).unlink()  # as before training ends
    (run_dir / runs.META_FILE).unlink()
    with held_elsewhere(run_dir, "advkit train") as pid:
        for command in (["analyze", str(run_dir)], ["eval", str(run_dir), *EVAL],
                        ["eval", str(_checkpoint(run_dir, "best")), *EVAL]):  # fmt: skip
            assert main(command) == 2
            err = capsys.readouterr().err
            assert f"being trained by pid {pid} (advkit train, since " in err, err
            assert "wait for training to end" in err and err.count("\n") == 1
    assert main(["analyze", str(run_dir)]) == 2  # nobody trains it now: how to finish it
    assert f"`advkit train --resume {run_dir}` completes it" in capsys.readouterr().err


def test_find_checkpoint_tells_checkpoints_from_other_files(trained, tmp_path):
    assert find_checkpoint(trained) is None
    assert find_checkpoint(trained / runs.MODEL_FILE) is None
    loose = tmp_path / runs.CHECKPOINT_DIR / "best.safetensors"  # no run folder above it
    loose.parent.mkdir()
    shutil.copy(_checkpoint(trained, "best"), loose)
    assert find_checkpoint(loose) is None
    last = find_checkpoint(_checkpoint(trained, "last"))
    assert (last.name, last.epoch, last.batch, last.tag) == ("last", 2, 0, "checkpoint-last")
    assert last.describe() == "checkpoint last (epoch 2)"


def test_a_checkpoint_of_a_fit_module_says_how_to_load_it(tmp_path, capsys):
    from torch import nn

    import advkit
    from advkit.models import NormalizedModel
    from advkit.run_checkpoints import checkpoint_weights

    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    data = (torch.rand(40, 1, 8, 8), torch.arange(40) % 3)
    advkit.fit(net, data, method="natural", epochs=1, batch_size=20, run_dir=tmp_path / "fit",
               quiet=True)  # fmt: skip
    best = tmp_path / "fit" / runs.CHECKPOINT_DIR / runs.BEST_WEIGHTS
    assert main(["eval", str(best), *EVAL]) == 2
    assert "wrap it in advkit.models.NormalizedModel" in capsys.readouterr().err
    again = NormalizedModel(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)), (0.0,), (1.0,))
    again.load_state_dict(checkpoint_weights(best))
