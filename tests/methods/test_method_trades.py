"""TRADES: the KL inner maximization and the CE + beta * KL outer loss."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from advkit.attacks.losses import kl_to_clean
from advkit.methods.trades import TRADESTraining
from tests.methods.methods_support import FakeTrainer, Recorder, build, random_batch, tiny_cnn


def test_beta_zero_is_natural_training() -> None:
    """Bit for bit: beta = 0 must skip the attack and run the natural step itself (the same
    forward, loss and update on the same batch, weights and shapes), not merely come close."""
    inputs, labels = random_batch()
    model = tiny_cnn()
    twin = copy.deepcopy(model)
    out = TRADESTraining(beta=0.0).step(inputs, labels, FakeTrainer(model).context(eps=0.1))
    natural = build("natural").step(inputs, labels, FakeTrainer(twin).context(eps=0.1))
    torch.testing.assert_close(out.loss, natural.loss, rtol=0, atol=0)
    torch.testing.assert_close(out.logits, natural.logits, rtol=0, atol=0)
    torch.testing.assert_close(model.state_dict(), twin.state_dict(), rtol=0, atol=0)


def test_attack_in_eval_mode_then_two_train_mode_passes() -> None:
    model = Recorder(tiny_cnn())
    build("trades", steps=4).step(*random_batch(), FakeTrainer(model).context(eps=0.1))
    # p(x) once, 4 attack steps (eval), then clean and adversarial passes (train).
    assert model.modes == [False] * 5 + [True, True]
    assert model.input_backwards == 4  # the attack; the weight update needs no input gradient


def test_update_matches_the_papers_loss() -> None:
    """The TRADES reference loop (0.001 * randn start, sign steps on KL, CE + beta * KL).

    The inner KL is the library's own ``kl_to_clean``: at the 0.001 start the KL gradient is so
    small that any other rounding flips some of its signs and the two runs part ways.
    """
    eps, steps, beta = 0.1, 3, 6.0
    step_size = 2.5 * eps / steps
    inputs, labels = random_batch()
    reference = tiny_cnn()
    model = copy.deepcopy(reference)

    torch.manual_seed(5)
    x_adv = (inputs + 0.001 * torch.randn_like(inputs)).clamp(0, 1)
    reference.eval()
    with torch.no_grad():
        log_p = F.log_softmax(reference(inputs), dim=1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = kl_to_clean(reference(x_adv), log_p).sum()
        (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = torch.min(torch.max(x_adv + step_size * grad.sign(), inputs - eps), inputs + eps)
        x_adv = x_adv.detach().clamp(0, 1)
    reference.train()
    logits = reference(inputs)
    robust = F.kl_div(
        F.log_softmax(reference(x_adv), dim=1), F.softmax(logits, dim=1), reduction="batchmean"
    )
    (F.cross_entropy(logits, labels) + beta * robust).backward()
    torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9).step()

    torch.manual_seed(5)
    method = TRADESTraining(beta=beta, steps=steps)
    out = method.step(inputs, labels, FakeTrainer(model).context(eps=eps))
    torch.testing.assert_close(out.metrics["kl"], robust.detach())
    torch.testing.assert_close(model.state_dict(), reference.state_dict())
