"""The runner's parts: --set options, skipping what a run cannot give, where results go."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from advkit.analysis import ANALYSES, AnalysisSkipped, placement
from advkit.analysis.placement import Identity, place
from advkit.analysis.runner import (
    headline,
    parse_sets,
    rebuilder,
    run_analyses,
    sample_indices,
    select,
)
from advkit.config_values import ConfigError
from tests.analysis.analysis_helpers import linear_context

ALL = ANALYSES.names()


def test_set_values_take_the_type_of_the_declared_default():
    sets = parse_sets(["loss_landscape.grid=7", "loss_landscape.extent=1/2",
                       "large_eps.linf=8/255"], ALL)  # fmt: skip
    assert sets == {"loss_landscape": {"grid": 7, "extent": 0.5}, "large_eps": {"linf": 8 / 255}}
    assert isinstance(sets["loss_landscape"]["grid"], int)


@pytest.mark.parametrize(
    ("text", "names", "message"),
    [
        ("loss_landscape.grid", ALL, "ANALYSIS.KEY=VALUE"),
        ("grid=3", ALL, "ANALYSIS.KEY=VALUE"),
        ("landscape.grid=3", ALL, "no analysis 'landscape'"),
        ("loss_landscape.gird=3", ALL, "no option 'gird'; it takes grid (default 21)"),
        ("loss_landscape.grid=abc", ALL, "--set loss_landscape.grid expects int"),
        ("loss_landscape.grid=3", ["input_gradients"], "not among the analyses run"),
    ],
)  # fmt: skip
def test_a_bad_set_is_refused_saying_what_to_write(text, names, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_sets([text], names)


def test_select_keeps_registry_order_and_refuses_unknown_names():
    assert select(["loss_landscape", "input_gradients"]) == ["input_gradients", "loss_landscape"]
    assert select(None) == ALL
    with pytest.raises(ValueError, match="unknown analysis 'nope'"):
        select(["nope"])


def test_an_analysis_needing_history_is_skipped_on_a_model_without_one(monkeypatch):
    monkeypatch.setitem(ANALYSES.meta("input_gradients"), "needs_history", True)
    ctx = linear_context(points=2)
    (outcome,) = run_analyses(ctx, ["input_gradients"])
    assert outcome.result is None and "metrics.jsonl" in outcome.skipped
    ctx.history = [{"epoch": 1}]
    (outcome,) = run_analyses(ctx, ["input_gradients"])
    assert outcome.result is not None and outcome.skipped is None


def test_an_analysis_that_raises_skipped_is_skipped_with_its_reason(monkeypatch):
    def refuse(ctx):
        raise AnalysisSkipped("no BatchNorm layer to look at")

    monkeypatch.setitem(ANALYSES._items, "input_gradients", refuse)
    monkeypatch.setitem(ANALYSES.meta("input_gradients"), "needs_rebuild", False)
    (outcome,) = run_analyses(linear_context(points=2), ["input_gradients"])
    assert outcome.skipped == "no BatchNorm layer to look at"


def test_each_analysis_sees_its_own_resolved_options():
    seen = {}
    ctx = linear_context(points=2)
    sets = parse_sets(["input_gradients.shown=1"], ALL)
    outcomes = run_analyses(ctx, ["input_gradients"], sets, on_done=lambda o: seen.update(
        {o.name: o.options}))  # fmt: skip
    assert seen == {"input_gradients": {"shown": 1}} and len(outcomes[0].result.data["grads"]) == 1


def test_the_sample_is_fixed_by_the_seed_and_distinct():
    first = sample_indices(1000, 50, seed=3)
    assert torch.equal(first, sample_indices(1000, 50, seed=3))
    assert not torch.equal(first, sample_indices(1000, 50, seed=4))
    assert len(set(first.tolist())) == 50 and len(sample_indices(10, 50, seed=0)) == 10


def test_the_rebuilt_model_is_fresh_seeded_and_leaves_the_global_rng_alone():
    meta = {"architecture": "cnn-small", "num_classes": 10, "mean": [0.5], "std": [0.5]}
    rebuild = rebuilder(meta, torch.device("cpu"), seed=0)
    state = torch.random.get_rng_state()
    first, second = rebuild(), rebuild()
    assert torch.equal(state, torch.random.get_rng_state())
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert rebuilder({**meta, "architecture": "python:my.Net"}, torch.device("cpu"), 0) is None


def test_headline_prints_the_declared_keys():
    summary = {"examples": 3, "rise_at_eps": {"adversarial": 1.0, "random": 0.5}, "loss": 2.0}
    assert headline("loss_landscape", summary) == (
        "rise_at_eps.adversarial 1, rise_at_eps.random 0.5"
    )


def _identity(**changes) -> Identity:
    base = {"examples": 16, "seed": 0, "eps": 0.1, "norm": "linf", "dataset": "fashion-mnist",
            "model": "a" * 16}  # fmt: skip
    return Identity(**{**base, **changes})


def _write(folder, stem, identity, figures=()):
    settings = {**identity.__dict__, "analyses": {"x": {"figures": list(figures)}}}
    (folder / f"{stem}.json").write_text(json.dumps({"settings": settings, "x": {"v": 1}}))
    for name in figures:
        (folder / name).write_text("png")
    (folder / f"{stem}.md").write_text("".join(f"![f]({name})\n" for name in figures))


def test_results_of_the_same_settings_share_a_file_and_others_get_their_own(tmp_path):
    identity = _identity()
    assert place(tmp_path, identity, "") == ("analysis", [])
    _write(tmp_path, "analysis", identity)
    assert place(tmp_path, _identity(eps=0.1 + 1e-15), "") == ("analysis", [])  # JSON round trip
    stem, notes = place(tmp_path, _identity(examples=17), "")
    assert stem == "analysis-2" and "left analysis.json alone" in notes[0]
    (tmp_path / "analysis-n5.json").write_text("{not json")
    assert place(tmp_path, _identity(examples=5), "n5")[0] == "analysis-n5-2"


def test_results_of_other_weights_are_moved_aside_with_their_figures(tmp_path):
    old = _identity(model="b" * 16)
    _write(tmp_path, "analysis", old, figures=["analysis-x-grid.png"])
    stem, notes = place(tmp_path, _identity(), "")
    assert stem == "analysis" and not (tmp_path / "analysis.json").exists()
    moved = json.loads((tmp_path / "analysis-modelbbbbbbbb.json").read_text())
    assert Identity.from_settings(moved["settings"]) == old and moved["x"] == {"v": 1}
    assert moved["settings"]["analyses"]["x"]["figures"] == ["analysis-modelbbbbbbbb-x-grid.png"]
    assert (tmp_path / "analysis-modelbbbbbbbb-x-grid.png").exists()
    assert (
        "](analysis-modelbbbbbbbb-x-grid.png)"
        in (tmp_path / "analysis-modelbbbbbbbb.md").read_text()
    )
    assert "other weights" in notes[0]


def test_identity_reads_back_from_settings_and_refuses_what_is_not_settings():
    identity = _identity(set={"loss_landscape.grid": 7})
    assert Identity.from_settings(json.loads(json.dumps(identity.__dict__))) == identity
    assert Identity.from_settings({"seed": 0}) is None and Identity.from_settings([]) is None
    assert placement.read_json_or_none(Path("/nonexistent")) is None
