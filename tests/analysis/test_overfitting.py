"""overfitting: the peak of validation robustness, the robust generalization gap per epoch and at
the end, on a synthetic history and on a real run's metrics."""

from __future__ import annotations

import pytest

from advkit.analysis import ANALYSES, AnalysisContext
from advkit.analysis.overfitting import summarize
from tests.analysis.run_context import history, run_context
from tests.conftest import requires_fashion_mnist


def _record(epoch: int, train_pgd: float, val_pgd: float, **extra: float) -> dict:
    return {"epoch": epoch, "train_loss": 1.0, "train_acc": 0.5, "train_sample_clean": 0.9,
            "train_sample_pgd": train_pgd, "train_sample_pgd_loss": 1 - train_pgd,
            "val_clean": 0.8, "val_pgd": val_pgd, "val_pgd_loss": 1 - val_pgd, **extra}  # fmt: skip


def _context(records: list[dict]) -> AnalysisContext:
    import torch

    return AnalysisContext(torch.nn.Identity(), torch.zeros(0, 1, 2, 2), torch.zeros(0).long(),
                           0.1, "linf", 2, history=records)  # fmt: skip


def test_robust_overfitting_on_a_synthetic_history():
    """Validation robustness peaks at epoch 2 (the first of two equal peaks) while the training
    sample's keeps rising: the gap widens."""
    records = [_record(1, 0.30, 0.25), _record(2, 0.50, 0.40), _record(3, 0.70, 0.40),
               _record(4, 0.90, 0.30)]  # fmt: skip
    result = ANALYSES.get("overfitting")(_context(records))
    s = result.summary
    assert s["best_epoch"] == 2 and s["best_val_pgd"] == 0.4 and s["final_val_pgd"] == 0.3
    assert s["val_pgd_drop"] == pytest.approx(0.1)
    assert s["robust_overfitting"] is None  # no config.yaml: over how many examples is unknown
    assert s["final_gap"] == pytest.approx(0.6) and s["gap_at_best"] == pytest.approx(0.1)
    assert [row["gap"] for row in s["per_epoch"]] == pytest.approx([0.05, 0.1, 0.3, 0.6])
    assert s["per_epoch"][3]["loss_gap"] == pytest.approx(0.6)
    assert s["measured"] == ["train", "val"]
    assert set(result.figures) == {"curves"} and "epoch **2**" in result.markdown
    assert "--track-test-sample" in result.markdown


@pytest.mark.parametrize(
    ("best", "last", "n", "verdict", "said"),
    [
        (0.433, 0.430, 1000, False, "within sampling noise, not robust overfitting"),
        (0.45, 0.38, 1000, True, "robust overfitting: 7.0 points lost after the peak, beyond"),
        (0.45, 0.38, 100, False, "within sampling noise"),  # the same drop on 100 examples
    ],
)
def test_robust_overfitting_only_beyond_the_intervals(tmp_path, best, last, n, verdict, said):
    """A 3-image drop on 1000 validation examples is noise; 7 points on 1000 are not, on 100
    they are. The number of examples comes from the run's config.yaml."""
    (tmp_path / "config.yaml").write_text(f"val_examples: {n}\nval_size: 5000\n")
    records = [_record(1, 0.3, 0.2), _record(2, 0.5, best), _record(3, 0.7, last)]
    context = _context(records)
    context.run_dir = tmp_path
    result = ANALYSES.get("overfitting")(context)
    s = result.summary
    assert s["robust_overfitting"] is verdict and s["val_examples"] == n
    assert s["val_pgd_drop"] == pytest.approx(best - last)
    assert s["best_val_pgd_interval"][0] <= best <= s["best_val_pgd_interval"][1]
    assert "do not overlap" in s["criterion"]
    assert said in result.markdown and f"Wilson intervals over {n} validation" in result.markdown


def test_the_validation_examples_are_the_smaller_of_the_two_settings(tmp_path):
    from advkit.analysis.overfitting import validation_examples

    assert validation_examples(None) is None and validation_examples(tmp_path) is None
    (tmp_path / "config.yaml").write_text("val_examples: 1000\nval_size: 300\n")
    assert validation_examples(tmp_path) == 300
    (tmp_path / "config.yaml").write_text("epochs: 3\n")  # the defaults: 1000 of 5000
    assert validation_examples(tmp_path) == 1000
    (tmp_path / "config.yaml").write_text("val_examples: [oops\n")
    assert validation_examples(tmp_path) is None


def test_a_history_without_the_training_sample_has_no_gap():
    records = [{"epoch": e, "train_loss": 1.0, "val_pgd": p} for e, p in [(1, 0.2), (2, 0.3)]]
    s = summarize(records)
    assert s["best_epoch"] == 2 and "final_gap" not in s
    assert "no fixed training sample" in ANALYSES.get("overfitting")(_context(records)).markdown


def test_a_history_without_validation_has_no_best_epoch():
    s = summarize([{"epoch": 1, "train_loss": 1.0}])
    assert s["best_epoch"] is None


def test_compare_draws_every_run():
    results = {
        label: ANALYSES.get("overfitting")(_context([_record(1, 0.3, v), _record(2, 0.5, v)]))
        for label, v in [("a", 0.2), ("b", 0.4)]
    }
    figures = ANALYSES.meta("overfitting")["compare"](results)
    assert set(figures) == {"curves"}


@requires_fashion_mnist
def test_a_real_run_records_the_training_sample_and_is_summarized(trained_runs):
    records = history(trained_runs["pgd"])
    keys = ["train_sample_clean", "train_sample_pgd", "train_sample_clean_loss",
            "train_sample_pgd_loss", "val_clean_loss", "val_pgd_loss"]  # fmt: skip
    for record in records:
        assert all(0 <= record[k] <= 1 for k in keys[:2]), record
        assert all(record[k] > 0 for k in keys[2:]), record
        assert record["train_sample_pgd"] <= record["train_sample_clean"] + 0.05
    s = ANALYSES.get("overfitting")(run_context(trained_runs["pgd"], examples=1)).summary
    best = max(records, key=lambda r: r["val_pgd"])
    assert s["best_epoch"] == best["epoch"] and s["epochs"] == len(records)
    last = records[-1]
    assert s["final_gap"] == pytest.approx(last["train_sample_pgd"] - last["val_pgd"], abs=1e-4)
