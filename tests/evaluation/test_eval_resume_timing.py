"""After a resumed evaluation the report gives one account of the attacks' time: the header
("attacks X s"), the JSON's ``seconds`` and ``timing.attacks`` and the total all count every
session, and the time of the interrupted sessions is said beside it."""

from __future__ import annotations

import time
from contextlib import nullcontext

import pytest

from advkit.data import TensorData
from advkit.evaluation import Progress, build_suite, format_table
from advkit.evaluation.report import headline, markdown_report
from advkit.evaluation.session import run_evaluation
from advkit.humanize import format_duration
from tests.evaluation.run_folder import stub_figures

EPS = 0.05
#: Seconds slept in each progress callback of the interrupted session (counted in its time).
NAP = 0.15


class Interrupt(Exception):
    pass


def interrupted_bar(description: str, unit: str):
    def progress(event: Progress) -> None:
        time.sleep(NAP)
        if event.phase == "pgd20" and event.done >= 3:
            raise Interrupt

    return nullcontext(progress)


def test_a_resumed_evaluation_counts_every_session_once(model, data, tmp_path, monkeypatch):
    stub_figures(monkeypatch)
    test = TensorData(*data)
    suite = build_suite("quick", eps=EPS, norm="linf")
    state = tmp_path / "eval.state.pt"
    options = {"eps": EPS, "norm": "linf", "batch_size": 8, "checks": "none", "state_path": state}
    with pytest.raises(Interrupt):
        run_evaluation(model, test, suite, bar=interrupted_bar, **options)
    assert state.exists()
    evaluation = run_evaluation(model, test, suite, **options)
    assert state.exists()  # kept until the JSON is written: a refused write resumes, not redoes
    earlier = evaluation.result.earlier_seconds
    assert earlier >= 2 * NAP  # two chunks of the first session were kept, a nap each
    written = evaluation.write(tmp_path / "out")
    assert not state.exists()
    data_ = written.data
    timing = data_["timing"]
    assert (
        timing["attacks"] == data_["seconds"] == pytest.approx(evaluation.result.seconds, abs=1e-3)
    )
    assert timing["attacks_earlier_sessions"] == pytest.approx(earlier, abs=1e-3)
    assert timing["total"] >= timing["attacks"] > earlier
    table = format_table(data_)
    attacks = format_duration(data_["seconds"])
    assert f"attacks {attacks}" in headline(data_)
    shown = format_duration(timing["attacks_earlier_sessions"])  # the report's rounded seconds
    assert f"attacks {attacks} ({shown} in earlier sessions)" in table
    assert f"attacks {attacks} (" in markdown_report(data_, title="run")
    assert f"attacks {attacks} (" in (tmp_path / "out" / "eval-quick-linf-0.05.md").read_text()


def test_an_evaluation_in_one_go_has_no_earlier_sessions(model, data):
    evaluation = run_evaluation(model, TensorData(*data), build_suite("quick", eps=EPS,
                                norm="linf"), eps=EPS, norm="linf", checks="none")  # fmt: skip
    assert evaluation.result.earlier_seconds == 0
    assert "attacks_earlier_sessions" not in evaluation.timing
    assert evaluation.timing["attacks"] == evaluation.result.seconds
