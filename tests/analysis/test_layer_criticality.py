"""layer_criticality: resetting a layer to its own weights changes nothing, the model comes back
bit for bit (a shallow "backup" would not), each layer is scored alone, and the same seed gives
the same numbers; training keeps the initial weights it starts from."""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from advkit import runs
from advkit.analysis import ANALYSES
from advkit.analysis import layer_criticality as lc
from advkit.training import Trainer, train
from tests.analysis.run_context import run_context
from tests.conftest import requires_fashion_mnist
from tests.training.test_trainer import small_config

pytestmark = requires_fashion_mnist
ARGS = {"eps": 0.1, "norm": "linf", "steps": 2, "seed": 7}


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), f"{name} changed"


def test_layers_are_the_modules_with_their_own_parameters_in_model_order(trained_runs):
    ctx = run_context(trained_runs["pgd"], examples=8)
    names = [name for name, _ in lc.layers(ctx.model)]
    assert names == ["net.features.0", "net.features.2", "net.classifier.1", "net.classifier.3"]


def test_a_layer_reset_to_its_own_weights_has_criticality_exactly_zero(trained_runs):
    ctx = run_context(trained_runs["pgd"], examples=64)
    scores = lc.layer_scores(ctx.model, ctx.inputs, ctx.labels, weights(ctx.model), **ARGS)
    assert len(scores) == 4
    for score in scores.values():
        assert score == {"criticality": 0.0, "accuracy_drop": 0.0, "robust_accuracy_drop": 0.0}


def test_re_randomization_is_not_the_runs_own_initialization(trained_runs):
    """The fixture trained with seed 0 and is analyzed with seed 0: a fresh copy seeded like the
    run would be its initial weights, and both variants would give the same numbers."""
    ctx = run_context(trained_runs["pgd"], examples=32, options={"steps": 0})
    fresh = ctx.rebuild().state_dict()
    initial = load_file(trained_runs["pgd"] / "checkpoints" / "init.safetensors")
    assert not any(torch.equal(fresh[name], initial[name]) for name in initial if "weight" in name)
    layers = ANALYSES.get("layer_criticality")(ctx).summary["layers"]
    assert all(layer["criticality"] != layer["reinit_criticality"] for layer in layers)


def _check_each_layer_scored_alone_and_model_restored(ctx) -> None:
    """Every layer's score equals the score of an untouched copy with only that layer reset, and
    the model ends with its own weights: what a restore from a shallow copy breaks."""
    original = weights(ctx.model)
    reference = copy.deepcopy(ctx.model)
    fresh = ctx.rebuild().state_dict()
    scores = lc.layer_scores(ctx.model, ctx.inputs, ctx.labels, fresh, **ARGS)
    assert_same_weights(ctx.model, original)
    baseline = lc.outcome(reference, ctx.inputs, ctx.labels, **ARGS)
    for name, module in lc.layers(reference):
        alone = copy.deepcopy(reference)
        lc.load_into(alone.get_submodule(name), {k: fresh[f"{name}.{k}"]
                                                 for k in lc.own_tensors(module)})  # fmt: skip
        reset = lc.outcome(alone, ctx.inputs, ctx.labels, **ARGS)
        expected = 100 * (1 - lc.mean_cosine(baseline.probs, reset.probs))
        assert scores[name]["criticality"] == pytest.approx(expected, abs=1e-3), name
        drop = baseline.clean_accuracy - reset.clean_accuracy
        assert scores[name]["accuracy_drop"] == pytest.approx(drop, abs=1e-4), name


def test_each_layer_is_scored_alone_and_the_model_restored_bit_for_bit(trained_runs):
    _check_each_layer_scored_alone_and_model_restored(run_context(trained_runs["pgd"], 64))


def test_a_shallow_backup_is_caught(trained_runs, monkeypatch):
    """The reference code's ``state_dict().copy()``: references to the tensors, which the reset
    overwrites; the model keeps the random layer and the next layers are scored with it."""
    monkeypatch.setattr(lc, "snapshot", lambda module: dict(lc.own_tensors(module)))
    with pytest.raises(AssertionError):
        _check_each_layer_scored_alone_and_model_restored(run_context(trained_runs["pgd"], 64))


def test_the_analysis_leaves_the_model_unchanged_and_repeats_with_the_seed(trained_runs):
    ctx = run_context(trained_runs["pgd"], examples=64, options={"steps": 2})
    original = weights(ctx.model)
    first = ANALYSES.get("layer_criticality")(ctx)
    assert_same_weights(ctx.model, original)
    again = ANALYSES.get("layer_criticality")(
        run_context(trained_runs["pgd"], 64, options={"steps": 2})
    )
    assert again.summary == first.summary
    layers = first.summary["layers"]
    assert [e["name"] for e in layers] == [name for name, _ in lc.layers(ctx.model)]
    for entry in layers:
        assert 0 < entry["criticality"] <= 100
        assert -1 <= entry["accuracy_drop"] <= 1 and entry["robust_accuracy_drop"] is not None
        assert entry["reinit_criticality"] is not None  # the run kept its initial weights
    assert first.summary["skipped"] == {}
    assert set(first.figures) == {"bars"} and "| layer |" in first.markdown
    other_seed = ANALYSES.get("layer_criticality")(
        run_context(trained_runs["pgd"], 64, seed=1, options={"steps": 2})
    )
    assert other_seed.summary["layers"] != layers  # another fresh copy, other points


def test_without_a_rebuild_or_initial_weights_the_variants_say_why(trained_runs, tmp_path):
    ctx = run_context(trained_runs["pgd"], examples=32, rebuild=None, run_dir=None,
                      options={"steps": 1})  # fmt: skip
    result = ANALYSES.get("layer_criticality")(ctx)
    assert set(result.summary["skipped"]) == {"re-randomize", "re-initialize"}
    assert "cannot be rebuilt" in result.summary["skipped"]["re-randomize"]
    assert all(e["criticality"] is None for e in result.summary["layers"])
    assert "Not measured" in result.markdown


@pytest.mark.parametrize("how", ["missing", "truncated"])
def test_initial_weights_missing_or_damaged_skip_the_reinit_saying_why(trained_runs, tmp_path, how):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_runs["pgd"], run)
    init = run / runs.CHECKPOINT_DIR / runs.INIT_WEIGHTS
    if how == "missing":
        init.unlink()
    else:
        init.write_bytes(init.read_bytes()[:100])
    result = ANALYSES.get("layer_criticality")(run_context(run, 16, options={"steps": 1}))
    why = result.summary["skipped"]["re-initialize"]
    assert "init.safetensors" in why and "\n" not in why
    assert ("kept no initial weights" if how == "missing" else "delete it") in why
    assert all(e["reinit_criticality"] is None for e in result.summary["layers"])
    assert all(e["criticality"] is not None for e in result.summary["layers"])


def test_compare_draws_every_run(trained_runs):
    results = {
        label: ANALYSES.get("layer_criticality")(run_context(run, 32, options={"steps": 1}))
        for label, run in trained_runs.items()
    }
    figures = ANALYSES.meta("layer_criticality")["compare"](results)
    assert set(figures) == {"bars"}
    assert len(figures["bars"].axes[0].get_legend().get_texts()) == 2


def test_training_keeps_the_initial_weights_once(fashion_small, tmp_path):
    """checkpoints/init.safetensors holds the weights before the first step, and a resume
    leaves it alone."""
    config = small_config(epochs=1)
    trainer = Trainer(config, tmp_path, data=fashion_small)
    before = weights(trainer.model)
    trainer.fit()
    init = load_file(str(tmp_path / runs.CHECKPOINT_DIR / runs.INIT_WEIGHTS))
    assert init.keys() == before.keys()
    assert all(torch.equal(init[k], before[k]) for k in before)
    final = load_file(str(tmp_path / runs.MODEL_FILE))
    assert any(not torch.equal(init[k], final[k]) for k in init)
    stamp = (tmp_path / runs.CHECKPOINT_DIR / runs.INIT_WEIGHTS).stat().st_mtime_ns
    train(small_config(epochs=2), tmp_path, data=fashion_small, resume=True)
    assert (tmp_path / runs.CHECKPOINT_DIR / runs.INIT_WEIGHTS).stat().st_mtime_ns == stamp
