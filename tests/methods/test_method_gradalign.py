"""FGSM + GradAlign: the regularizer, its double backprop, and turning it off."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit.methods.gradalign import GradAlignTraining
from advkit.threat import get_threat
from tests.methods.methods_support import FakeTrainer, Recorder, random_batch, tiny_cnn


def _binary_batch(n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, labels = random_batch(n)
    return inputs, labels % 2


def test_regularizer_is_zero_for_a_linear_model() -> None:
    """Two-class linear model: grad_x CE = (p_1 - [y = 1]) (w_1 - w_0), one direction for all x."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    out = GradAlignTraining(grad_align_lambda=1.0).step(
        *_binary_batch(), FakeTrainer(model).context(eps=0.3)
    )
    assert out.metrics["grad_align_reg"].abs() < 1e-5
    assert out.metrics["grad_align_cos"] > 1 - 1e-5


def test_regularizer_is_positive_for_a_nonlinear_model() -> None:
    torch.manual_seed(0)
    model = tiny_cnn()
    out = GradAlignTraining(grad_align_lambda=1.0).step(
        *random_batch(), FakeTrainer(model).context(eps=0.3)
    )
    assert out.metrics["grad_align_reg"] > 1e-3
    assert out.metrics["grad_align_cos"] < 1


def test_update_matches_the_written_out_objective() -> None:
    """CE at the FGSM point + lambda * (1 - mean cos), both gradients differentiated (double
    backprop), same eta: the same weight update and the same reported numbers."""
    eps, lam = 0.1, 0.5
    inputs, labels = random_batch()
    reference = tiny_cnn()
    model = copy.deepcopy(reference)

    zero = torch.zeros_like(inputs, requires_grad=True)
    loss_x = F.cross_entropy(reference(inputs + zero), labels, reduction="sum")
    (grad_x,) = torch.autograd.grad(loss_x, zero, create_graph=True)
    delta = (eps * grad_x.detach().sign()).clamp(-eps, eps)
    delta = (inputs + delta).clamp(0, 1) - inputs
    loss = F.cross_entropy(reference(inputs + delta), labels)
    torch.manual_seed(3)
    eta = get_threat("linf").random_init(inputs, eps).requires_grad_(True)
    loss_eta = F.cross_entropy(reference(inputs + eta), labels, reduction="sum")
    (grad_eta,) = torch.autograd.grad(loss_eta, eta, create_graph=True)
    cos = F.cosine_similarity(grad_x.flatten(1), grad_eta.flatten(1), dim=1)
    (loss + lam * (1 - cos.mean())).backward()
    torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9).step()

    torch.manual_seed(3)
    out = GradAlignTraining(grad_align_lambda=lam).step(
        inputs, labels, FakeTrainer(model).context(eps=eps)
    )
    torch.testing.assert_close(out.metrics["grad_align_cos"], cos.mean().detach())
    torch.testing.assert_close(out.metrics["grad_align_reg"], lam * (1 - cos.mean().detach()))
    for got, want in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(got, want)


def test_lambda_zero_is_plain_fgsm_without_double_backprop(monkeypatch: pytest.MonkeyPatch) -> None:
    grad = torch.autograd.grad

    def first_order_only(*args: object, create_graph: bool = False, **kwargs: object):
        assert not create_graph, "lambda = 0 must not pay for double backprop"
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", first_order_only)
    model = Recorder(tiny_cnn())
    out = GradAlignTraining(grad_align_lambda=0.0).step(
        *random_batch(), FakeTrainer(model).context(eps=0.1)
    )
    assert out.metrics == {}
    assert len(model.inputs) == 2 and all(model.modes)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by torch.compile's imports
def test_torch_compile_is_refused_with_a_clear_message() -> None:
    """torch.compile'd modules cannot be differentiated twice."""
    model = tiny_cnn()
    trainer = FakeTrainer(model)
    ctx = trainer.context(eps=0.1)
    ctx.model = ctx.attack_model = torch.compile(model)
    with pytest.raises(ValueError, match="without compile"):
        GradAlignTraining().step(*random_batch(), ctx)
