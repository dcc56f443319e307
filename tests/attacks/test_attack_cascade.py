"""The worst-case cascade: monotone, never above clean accuracy, honest about success."""

from __future__ import annotations

import itertools
from functools import partial

import pytest
import torch

from advkit.attacks import (
    AttackStage,
    apgd,
    apgd_targeted,
    cascade,
    fgsm,
    pgd,
    square,
    standard_stages,
)
from tests.attacks.attacks_support import linear_problem


@pytest.fixture(scope="module")
def problem():
    problem = linear_problem(num_classes=10, real_classes=10, n=40, seed=3)
    # Make a few samples misclassified on clean inputs: flip their labels.
    problem.labels[:4] = (problem.labels[:4] + 1) % 10
    return problem


def test_cascade_is_monotone_and_records_every_stage(problem) -> None:
    eps = problem.optimal_eps("linf")[4:].median().item()
    stages = [
        AttackStage("fgsm", partial(fgsm, eps=eps)),
        AttackStage("pgd", partial(pgd, eps=eps, steps=10)),
        AttackStage("apgd-t", partial(apgd_targeted, eps=eps, steps=20, seed=0)),
        AttackStage("square", partial(square, eps=eps, queries=300, seed=0)),
    ]
    result = cascade(problem.model, problem.inputs, problem.labels, stages, batch_size=16, eps=eps)
    accuracies = result.robust_accuracy
    assert result.clean_accuracy == pytest.approx(36 / 40)
    assert all(a <= result.clean_accuracy for a in accuracies)
    assert all(b <= a for a, b in itertools.pairwise(accuracies))
    assert list(result.summary()) == ["clean", "fgsm", "pgd", "apgd-t", "square"]
    assert result.robust_masks.shape == (4, 40)
    assert not result.clean_correct[:4].any() and (result.broken_by[:4] == -1).all()

    predictions = problem.logits(result.adv_inputs).argmax(dim=1)
    broken = result.broken_by >= 0
    assert (predictions[broken] != problem.labels[broken]).all()
    assert (predictions[result.robust] == problem.labels[result.robust]).all()
    assert torch.equal(result.robust, result.clean_correct & ~broken)
    for index in range(len(stages)):
        newly = result.broken_by == index
        assert not result.robust_masks[index][newly].any()
        if index:
            assert result.robust_masks[index - 1][newly].all()
    optimal = problem.optimal_eps("linf")
    assert not broken[optimal > eps * (1 + 1e-4)].any()
    assert broken[result.clean_correct & (optimal < eps / 1.25)].all()
    assert torch.equal(result.adv_inputs[:4], problem.inputs[:4])  # never attacked: a copy
    assert result.final_robust_accuracy == pytest.approx(result.robust.float().mean().item())


def test_each_stage_only_sees_robust_samples(problem) -> None:
    seen: list[int] = []

    def recording(model, inputs, labels):
        seen.append(len(inputs))
        return apgd(model, inputs, labels, eps=0.5, steps=5, seed=0)

    def identity(model, inputs, labels):
        seen.append(len(inputs))
        return inputs

    stages = [AttackStage("strong", recording), AttackStage("after", identity)]
    result = cascade(problem.model, problem.inputs, problem.labels, stages, batch_size=64)
    assert seen[0] == 36 and result.robust_accuracy[0] == 0.0
    assert len(seen) == 1  # nothing left for the second stage


def test_cascade_rejects_attacks_that_leave_the_budget(problem) -> None:
    def cheat(model, inputs, labels):
        return (inputs + 0.5).clamp(0, 1)

    with pytest.raises(ValueError, match="'cheat' left the threat model"):
        cascade(
            problem.model, problem.inputs, problem.labels, [AttackStage("cheat", cheat)], eps=0.1
        )


def test_standard_stages_have_autoattack_defaults() -> None:
    stages = standard_stages(8 / 255, "linf")
    assert [s.name for s in stages] == ["apgd-ce", "apgd-t", "square"]
    assert stages[0].attack.keywords["steps"] == 100
    assert stages[1].attack.keywords["num_target_classes"] == 9
    assert stages[2].attack.keywords["queries"] == 5000
    assert [s.name for s in standard_stages(0.5, "l2")] == ["apgd-ce", "apgd-t", "square"]


def test_standard_cascade_on_the_linear_model(problem) -> None:
    eps = problem.optimal_eps("linf")[4:].median().item()
    stages = standard_stages(eps, "linf", steps=20, queries=500)
    result = cascade(problem.model, problem.inputs, problem.labels, stages, batch_size=20, eps=eps)
    optimal = problem.optimal_eps("linf")
    broken = result.broken_by >= 0
    assert broken[result.clean_correct & (optimal < eps / 1.25)].all()
    assert not broken[optimal > eps * (1 + 1e-4)].any()
