"""Numbers as printed for a reader: durations everywhere one is shown, plain-text descriptions."""

from __future__ import annotations

import pytest

from advkit.commands.train import summarize
from advkit.evaluation.report import format_table, markdown_report
from advkit.humanize import format_bytes, format_duration, format_eps, plain_text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0.00 s"),
        (0.42, "0.42 s"),
        (2.04, "2.0 s"),
        (12.34, "12.3 s"),
        (59.94, "59.9 s"),
        (59.97, "1 min 00 s"),  # rounding carries into the next unit, never "60.0 s"
        (245.2, "4 min 05 s"),
        (3599.6, "1 h 00 min"),
        (3725, "1 h 02 min"),
        (float("nan"), "n/a"),
    ],
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_format_eps():
    assert format_eps(8 / 255) == "0.03137 (8/255)"
    assert format_eps(0.1) == "0.1"


def _meta(seconds: float) -> dict:
    return {
        "architecture": "cnn-small", "method": {"name": "pgd"}, "dataset": "fashion-mnist",
        "threat": {"norm": "linf", "eps": 8 / 255}, "train_seconds": seconds,
        "selected_epoch": 1, "selected": "best", "val_clean": 0.5, "val_pgd": 0.25,
    }  # fmt: skip


def test_a_short_training_run_says_how_many_seconds(tmp_path):
    """It used to print "in 0.0 min"."""
    assert "in 2.4 s\n" in summarize(_meta(2.4), tmp_path)
    assert "in 4 min 05 s\n" in summarize(_meta(245.0), tmp_path)
    assert "eps=0.03137 (8/255)" in summarize(_meta(2.4), tmp_path)


#: A small evaluation result, as advkit eval writes it.
EVALUATION = {
    "suite": "quick", "norm": "linf", "eps": 0.1, "n_examples": 100, "seconds": 103.4,
    "seed": 0, "clean": 0.9, "attacks": ["pgd20"], "pgd20": 0.5, "worst_case": 0.5,
    "warnings": [],
}  # fmt: skip


def test_evaluation_time_and_training_time_in_the_report():
    data = dict(EVALUATION)
    assert "100 examples, 1 min 43 s" in format_table(data)
    text = markdown_report(data, title="run", metadata={"train_seconds": 7.31})
    assert "1 min 43 s" in text and "training time 7.3 s" in text


def test_workers_and_their_communication_in_the_report():
    data = dict(EVALUATION)
    comm = {"compression": "int8", "comm_iterations": 270, "comm_wire_bytes_per_iter": 168_400,
            "comm_seconds": 3.14, "epoch_seconds": 61.0}  # fmt: skip
    text = markdown_report(data, title="run", metadata={"workers": 2, "communication": comm})
    assert "workers 2 (int8 gradients, 168 kB per iteration on the wire; communication " in text
    assert "3.1 s of 1 min 01 s" in text
    assert "workers" not in markdown_report(data, title="run", metadata={"workers": 1})


@pytest.mark.parametrize(
    ("count", "text"),
    [(12, "12 B"), (1500, "1.5 kB"), (2_924_000_000, "2.92 GB"), (6.7e5, "670 kB")],
)
def test_format_bytes(count, text):
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("FGSM from an ``init`` start", "FGSM from an init start"),
        (
            "see :class:`~advkit.methods.Method` and :func:`the loop <advkit.train>`",
            "see Method and the loop",
        ),
        ("Install it with `apt-get install x`", "Install it with apt-get install x"),
        ("a *very* **bold**\n   claim", "a very bold claim"),
        ("2.5*eps/steps for pgd, 1.25*eps fast", "2.5*eps/steps for pgd, 1.25*eps fast"),
    ],
)
def test_plain_text_strips_markup_only(text, plain):
    assert plain_text(text) == plain
