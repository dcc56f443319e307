"""What an evaluation reports while it runs: which attack (a cascade's stages included), its
examples done of the total, the examples still robust, ETAs; reports while an attack runs; the
bar that shows them, and ``--quiet`` / ``quiet=True``."""

from __future__ import annotations

import sys
from functools import partial

import pytest

import advkit
from advkit import progress_display
from advkit.attacks import fgsm, pgd
from advkit.cli import main
from advkit.evaluation import AttackEntry, Progress, Suite, attack_progress, build_suite, evaluate
from advkit.evaluation.attack_progress import AttackClock, expected_calls
from advkit.evaluation.eval_bar import describe, detail
from tests.evaluation.run_folder import make_run

EPS = 0.02
CASCADE = Suite(
    "cheap-cascade",
    (
        AttackEntry("fgsm", partial(fgsm, eps=EPS), "FGSM"),
        AttackEntry("pgd5", partial(pgd, eps=EPS, steps=5, loss="cw"), "PGD-5 CW"),
    ),
    cascade=True,
)


@pytest.fixture
def terminal(monkeypatch):
    monkeypatch.setattr(progress_display, "_isatty", lambda stream: True)
    monkeypatch.setattr(progress_display, "IN_NOTEBOOK", False)


def test_a_cascade_reports_each_stage_with_examples_robust_and_etas(model, data):
    events: list[Progress] = []
    result = evaluate(model, *data, CASCADE, eps=EPS, batch_size=8, progress=events.append)
    attacks = [e for e in events if e.attack is not None]
    assert {e.attack for e in attacks} == {"fgsm", "pgd5"}
    assert all(e.attacks == 2 and e.attack_index == 1 + (e.attack == "pgd5") for e in attacks)
    correct = int(result.clean.sum())
    assert all(e.examples_total == correct and e.total is not None for e in attacks)
    finished = [e for e in attacks if not e.live]
    assert len(finished) == 2 * -(-correct // 8)  # one unit per stage and chunk
    assert [e.done for e in finished] == sorted(e.done for e in finished)
    last = finished[-1]
    assert last.done == last.total and last.attack == "pgd5"
    assert last.examples_done == correct and last.robust == int(result.robust["pgd5"].sum())
    assert last.eta_total == 0 and last.eta_attack == 0
    assert all(e.eta_total is not None for e in finished[1:])  # priced once one unit is measured
    assert any(e.live for e in attacks)  # a stage says it starts before it ends


def test_reports_come_while_an_attack_runs(model, data, monkeypatch):
    monkeypatch.setattr(attack_progress, "REPORT_INTERVAL", 0.0)  # every model call reports
    events: list[Progress] = []
    evaluate(model, *data, "quick", eps=EPS, batch_size=64, progress=events.append)
    inside = [e for e in events if e.live and e.done % 1]
    assert inside, "no report from inside the attack"
    assert all(e.attack == "pgd20" for e in inside)
    assert all(e.eta_attack is not None for e in inside if e.done % 1 > 0.06)
    fractions = [e.done % 1 for e in inside]
    assert fractions == sorted(fractions) and max(fractions) > 0.5


def test_expected_calls_follow_the_attack_settings():
    autoattack = build_suite("autoattack", eps=EPS, norm="linf")
    assert [expected_calls(e.attack) for e in autoattack.attacks] == [101, 909, 5000]
    assert expected_calls(build_suite("quick", eps=EPS, norm="linf").attacks[0].attack) == 20
    assert expected_calls(partial(pgd, eps=EPS, steps=7, restarts=3)) == 21
    assert expected_calls(lambda model, x, y: x) is None


def test_the_eta_prices_attacks_not_run_yet_by_their_model_calls(monkeypatch, model):
    now = [0.0]
    monkeypatch.setattr(attack_progress.time, "perf_counter", lambda: now[0])
    clock = AttackClock(model, {"a": 10, "b": 30}, cascade=False)
    clock.plan([8, 8])
    assert clock.status().eta_total is None  # nothing measured yet
    clock.start("a", 8)
    now[0] = 4.0
    clock.done("a", 6)
    status = clock.status()  # a: 0.5 s an example; b costs 3 times a per example
    assert (status.attack, status.examples_done, status.examples_total) == ("a", 8, 16)
    assert status.robust == 6
    assert status.eta_attack == pytest.approx(4.0)
    assert status.eta_total == pytest.approx(4.0 + 2 * 12.0)


def test_the_bar_names_the_attack_its_examples_and_the_etas():
    event = Progress("cascade", 5.5, 9, False, live=True, attack="apgd_t", attack_index=2,
                     attacks=3, examples_done=512, examples_total=850, robust=388,
                     eta_attack=70.0, eta_total=510.0)  # fmt: skip
    assert describe("eval autoattack", event) == "eval autoattack apgd_t (2/3)"
    assert detail(event) == ("512/850 examples, robust 388, ETA attack 1 min 10 s, all 8 min 30 s")
    assert detail(Progress("clean", 1, 9, False)) == "clean"


def test_advkit_evaluate_shows_the_attacks_unless_quiet(model, data, terminal, capsys):
    advkit.evaluate(model, data, eps=EPS, suite=CASCADE, checks="none")
    assert "eval cheap-cascade" in capsys.readouterr().err  # redrawn in place: what shows is timing
    advkit.evaluate(model, data, eps=EPS, suite=CASCADE, checks="none", quiet=True)
    assert capsys.readouterr().err == ""


def test_advkit_eval_shows_the_attacks_unless_quiet(tmp_path, terminal, capsys):
    run = make_run(tmp_path)
    argv = ["eval", str(run), "--n-examples", "8", "--checks", "none"]
    assert main(argv) == 0
    assert "eval quick" in capsys.readouterr().err
    assert main([*argv, "--no-resume", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_a_log_file_gets_no_carriage_returns(model, data, capsys, monkeypatch):
    monkeypatch.setattr(progress_display, "IN_NOTEBOOK", False)
    monkeypatch.setattr(progress_display, "LOG_INTERVAL", 0.0)
    assert not sys.stderr.isatty()
    advkit.evaluate(model, data, eps=EPS, suite=CASCADE, checks="none")
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "eval cheap-cascade pgd5 (2/2):" in err, err
    assert "examples, robust" in err and "ETA attack" in err
