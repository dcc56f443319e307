"""evaluate(): per-sample robustness, worst case, resume, determinism, input handling."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from advkit.attacks import fgsm, pgd
from advkit.data import TensorData
from advkit.evaluation import AttackEntry, Progress, Suite, build_suite, evaluate

EPS = 0.02


class Interrupt(Exception):
    pass


def stop_after(chunks: int):
    def progress(event: Progress) -> None:
        if event.done >= chunks and not event.resumed:
            raise Interrupt

    return progress


def same(a, b) -> None:
    """Exactly the same per-sample results. Used only where both evaluations run in one process
    with the same model, chunking (batch size) and per-chunk seeds: each chunk is a freshly
    gathered tensor of the same values and shape, so every kernel takes the same path."""
    assert a.accuracies() == b.accuracies()
    assert torch.equal(a.clean, b.clean)
    assert a.robust.keys() == b.robust.keys()
    for name in a.robust:
        assert torch.equal(a.robust[name], b.robust[name]), name


def test_robust_never_above_clean_and_worst_case_below_every_column(model, data):
    result = evaluate(model, *data, "paper", eps=EPS, batch_size=16)
    assert list(result.robust) == ["fgsm", "pgd20", "pgd100", "cw100", "pgd20x10"]
    for name, robust in result.robust.items():
        assert not (robust & ~result.clean).any(), f"{name} robust where clean is wrong"
        assert not (result.worst_case & ~robust).any()
    acc = result.accuracies()
    assert 0 < acc["worst_case"] < acc["pgd20"] <= acc["clean"] < 1  # CW breaks more than CE
    assert acc["worst_case"] == min(acc.values())
    assert result.n_examples == 40 and result.seconds > 0


def test_autoattack_cascade_is_cumulative(model, data):
    result = evaluate(model, *data, "autoattack", eps=EPS, batch_size=64)  # 1 chunk: Square is slow
    acc = result.accuracies()
    assert list(result.robust) == ["apgd_ce", "apgd_t", "square"] and result.cascade
    assert acc["clean"] >= acc["apgd_ce"] >= acc["apgd_t"] >= acc["square"] == acc["worst_case"]
    assert not (result.robust["apgd_t"] & ~result.robust["apgd_ce"]).any()


@pytest.mark.parametrize("suite", ["paper", "cascade"])
def test_interrupted_then_resumed_equals_uninterrupted(model, data, tmp_path, suite):
    if suite == "cascade":  # the cascade path with cheap stages
        suite = Suite(
            "cheap-cascade",
            (
                AttackEntry("fgsm", partial(fgsm, eps=EPS), "FGSM"),
                AttackEntry("pgd5", partial(pgd, eps=EPS, steps=5, loss="cw"), "PGD-5 CW"),
            ),
            cascade=True,
        )
    state = tmp_path / "state.pt"
    reference = evaluate(model, *data, suite, eps=EPS, batch_size=8)
    with pytest.raises(Interrupt):
        evaluate(
            model, *data, suite, eps=EPS, batch_size=8, state_path=state, progress=stop_after(7)
        )
    assert state.exists()
    events: list[Progress] = []
    resumed = evaluate(
        model, *data, suite, eps=EPS, batch_size=8, state_path=state, progress=events.append
    )
    same(resumed, reference)
    assert sum(event.resumed for event in events) == 7
    assert events[-1].done == events[-1].total
    assert not state.exists()  # removed once complete


@pytest.mark.parametrize("change", ["eps", "weights", "data"])
def test_state_of_another_evaluation_is_not_reused(model, data, tmp_path, change):
    state = tmp_path / "state.pt"
    with pytest.raises(Interrupt):
        evaluate(model, *data, "quick", eps=EPS, batch_size=8, state_path=state,
                 progress=stop_after(7))  # fmt: skip
    eps, inputs = (2 * EPS if change == "eps" else EPS), data[0]
    if change == "weights":
        with torch.no_grad():
            model[1].bias.add_(0.01)
    if change == "data":
        inputs = inputs.flip(-1)
    events: list[Progress] = []
    other = evaluate(model, inputs, data[1], "quick", eps=eps, batch_size=8, state_path=state,
                     progress=events.append)  # fmt: skip
    assert not any(event.resumed for event in events)
    same(other, evaluate(model, inputs, data[1], "quick", eps=eps, batch_size=8))


def test_seeded_per_chunk_and_leaves_global_rng_alone(model, data):
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = evaluate(model, *data, "quick", eps=EPS, batch_size=16, seed=3)
    assert torch.equal(torch.get_rng_state(), before)
    same(first, evaluate(model, *data, "quick", eps=EPS, batch_size=16, seed=3))


def test_uint8_dataset_input_matches_float_tensors(model, data):
    """Exact: uint8 -> float is exact and division by 255 is correctly rounded, so both paths
    build bitwise-equal chunks (fresh tensors, same batch size) before any model arithmetic."""
    images = (data[0] * 255).round().to(torch.uint8)
    from_data = evaluate(model, TensorData(images, data[1]), None, "quick", eps=EPS)
    from_tensors = evaluate(model, images.float() / 255, data[1], "quick", eps=EPS)
    same(from_data, from_tensors)


def test_user_errors(model, data):
    inputs, labels = data
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(model, inputs * 255, labels, "quick", eps=EPS)
    with pytest.raises(ValueError, match="labels"):
        evaluate(model, inputs, None, "quick", eps=EPS)
    with pytest.raises(ValueError, match="unknown evaluation suite"):
        evaluate(model, inputs, labels, "nope", eps=EPS)
    with pytest.raises(ValueError, match="eps must be > 0"):
        build_suite("quick", eps=0, norm="linf")
    with pytest.raises(ValueError, match="unknown norm"):
        build_suite("quick", eps=EPS, norm="l1")


def test_attack_leaving_the_budget_is_caught(model, data):
    cheat = Suite("cheat", (AttackEntry("cheat", lambda m, x, y: (x + 0.5).clamp(0, 1), ""),))
    with pytest.raises(RuntimeError, match="outside the linf ball"):
        evaluate(model, *data, cheat, eps=EPS)


def test_autoattack_suite_ends_with_square_for_both_norms():
    assert build_suite("autoattack", eps=0.5, norm="l2").names() == ["apgd_ce", "apgd_t", "square"]
    assert build_suite("autoattack", eps=0.03, norm="linf").names()[-1] == "square"


def test_misclassified_samples_are_never_attacked(model, data):
    def must_not_run(model, inputs, labels):
        raise AssertionError("attacked a misclassified sample")

    inputs = data[0]
    wrong = (model(inputs).argmax(dim=1) + 1) % 5
    suite = Suite("never", (AttackEntry("never", must_not_run, ""),))
    events: list[Progress] = []
    result = evaluate(model, inputs, wrong, suite, eps=EPS, batch_size=16, progress=events.append)
    assert result.accuracies() == {"clean": 0.0, "never": 0.0, "worst_case": 0.0}
    assert [(event.phase, event.done) for event in events] == [("clean", i) for i in (1, 2, 3)]


@pytest.mark.parametrize("name", ["quick", "restarts"])
def test_every_cheap_suite_runs_and_stays_below_clean(model, data, name):
    from advkit.evaluation import SUITES

    assert name in SUITES.names()
    result = evaluate(model, *data, name, eps=EPS, batch_size=64)
    acc = result.accuracies()
    assert set(result.robust) == {e.name for e in build_suite(name, eps=EPS, norm="linf").attacks}
    assert all(0 <= acc[k] <= acc["clean"] for k in result.robust)
    assert acc["worst_case"] == min(acc[k] for k in result.robust)
