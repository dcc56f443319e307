"""``advkit certify``: outputs, names that never replace another certification, one-line
errors, the noise warning, the lock, a model advkit did not train."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from advkit.cli import main
from advkit.runlock import hold_outputs
from tests.evaluation.run_folder import make_run

FAST = ["--n0", "10", "--n", "100", "--alpha", "0.01", "--n-examples", "3", "--batch-size",
        "100", "--quiet"]  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("certify"), n_test=6)


def test_writes_json_markdown_figure_and_never_replaces_another(
    run: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["certify", str(run), "--sigma", "0.25", *FAST, "--empirical-examples", "2",
            "--empirical-n", "50"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "largest certifiable radius with these n and alpha" in out
    stem = "cert-sigma0.25-select10-n100-alpha0.01-ex3"
    data = json.loads((run / f"{stem}.json").read_text())
    assert (run / f"{stem}.md").exists() and (run / f"{stem}.png").exists()
    assert data["n_examples"] == 3 and data["sigma"] == 0.25 and data["workers"] == 1
    assert set(data["per_sample"]) == {"index", "label", "prediction", "radius", "correct",
                                       "abstained", "seconds"}  # fmt: skip
    assert data["radius_cap"] == pytest.approx(0.25 * norm.ppf(0.01 ** (1 / 100)))
    rows = data["certified_accuracy"]
    assert [row["radius"] for row in rows] == [0, 0.25, 0.5]
    assert rows[-1]["above_cap"] and not rows[1]["above_cap"]
    assert all(0 <= row["interval"][0] <= row["accuracy"] <= row["interval"][1] for row in rows)
    assert len(data["empirical"]["points"]) == 2 and data["flags"] == []
    assert "without Gaussian noise" in data["warnings"][0]  # the run was trained with PGD
    assert data["weights_sha256"] and data["indices"] == [0, 1, 2]
    markdown = (run / f"{stem}.md").read_text()
    assert "Largest radius these n and alpha can certify" in markdown
    # the same certification again: replaced in place; another sigma: its own files
    assert main(argv) == 0
    assert "the same certification, run again" in capsys.readouterr().out
    assert main(["certify", str(run), "--sigma", "0.5", *FAST, "--empirical-examples", "0"]) == 0
    assert len(list(run.glob("cert-*.json"))) == 2
    assert not list(run.glob("*.state.pt"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sigma", "0"], "must be a finite number above 0"),
        (["--sigma", "8"], "did you mean 8/255?"),
        (["--sigma", "0.25", "--n0", "0"], "--n0 counts noisy draws"),
        (["--sigma", "0.25", "--alpha", "1.5"], "--alpha is the probability"),
        (["--sigma", "0.25", "--n", "5", "--alpha", "0.001"], "use --n 10 or more"),
        ([], "--sigma is needed"),
        (["--sigma", "0.25", "--n-examples", "0"], "must be at least 1"),
        (["--sigma", "0.25", "--radii", "0,-1", *FAST], "--radii needs comma-separated"),
        (["--bounds", "ibp"], "--bounds ibp needs --eps"),
        (["--bounds", "ibp", "--eps", "1.5"], "eps"),
    ],
)
def test_bad_input_is_one_line(
    run: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["certify", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_a_certification_being_written_is_refused(run: Path, capsys) -> None:
    held, release = threading.Event(), threading.Event()

    def other_writer() -> None:  # another thread: the lock is re-entrant only within one
        with hold_outputs(run, "cert-sigma0.3-select10-n100-alpha0.01-ex3", "another certify"):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=other_writer)
    thread.start()
    try:
        assert held.wait(30)
        assert main(["certify", str(run), "--sigma", "0.3", *FAST]) == 2
    finally:
        release.set()
        thread.join()
    err = capsys.readouterr().err
    assert "being written by" in err and err.count("\n") == 1


def test_neither_run_nor_model_says_what_to_give(capsys) -> None:
    assert main(["certify", "--sigma", "0.25"]) == 2
    err = capsys.readouterr().err
    assert "advkit certify RUN" in err and "--model REF" in err and err.count("\n") == 1


def test_a_model_advkit_did_not_train(run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "certs"
    data_file = tmp_path / "ten.npz"  # every one of the model's 10 classes
    images = np.random.default_rng(0).integers(0, 256, (10, 28, 28), dtype=np.uint8)
    labels = np.arange(10)
    np.savez(data_file, x_train=images, y_train=labels, x_test=images, y_test=labels)
    argv = ["certify", "--model", "cnn-small", "--weights", str(run / "model.safetensors"),
            "--dataset", "npz", "--data-dir", str(data_file), "--sigma", "0.25",
            *FAST, "--empirical-examples", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(next(out.glob("cert-*.json")).read_text())
    assert data["model_origin"]["reference"] == "cnn-small" and data["warnings"] == []
    assert "wrote" in capsys.readouterr().out


def test_a_dead_worker_is_told_the_certification_resumes() -> None:
    from advkit.commands.workers import next_steps

    on_restart, on_stop = next_steps("certify", None)
    assert "certification resumes from its saved progress" in on_restart()
    assert on_stop().startswith("run the same command again")


def test_interval_bounds_route_writes_verified_accuracy(run: Path, capsys) -> None:
    """``--bounds ibp --eps E``: verified accuracy by interval bounds, never above the clean
    accuracy, written as JSON and Markdown beside the run."""
    argv = ["certify", str(run), "--bounds", "ibp", "--eps", "0.01", "--n-examples", "4"]
    assert main(argv) == 0
    data = json.loads((run / "bounds-ibp-eps0.01-ex4.json").read_text())
    assert (run / "bounds-ibp-eps0.01-ex4.md").exists()
    assert data["eps"] == 0.01 and data["n"] == 4 and data["indices"] == [0, 1, 2, 3]
    assert 0 <= data["verified_accuracy"] <= data["clean_accuracy"] <= 1
    assert data["weights_sha256"] and data["advkit_version"]
    assert "Verified accuracy" in capsys.readouterr().out
