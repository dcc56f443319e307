"""Training for randomized smoothing (gaussian, smoothadv, consistency, macer) and SmoothAdv's
attack on the smoothed classifier."""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advkit.attacks import smoothed_pgd
from advkit.attacks.smoothing import (
    gaussian_noise,
    noisy_copies,
    smoothed_log_probs,
    smoothed_pgd_delta,
)
from advkit.config import ConfigError, TrainConfig, load_config, save_config
from advkit.errors import BudgetError, InputError
from advkit.methods import METHODS, StepContext
from advkit.methods.consistency import consistency_terms
from advkit.methods.macer import MACERTraining
from advkit.noise import sample_noise
from advkit.threat import get_threat
from tests.methods.methods_support import FakeTrainer, Recorder, build, random_batch, tiny_cnn

SMOOTHING = ["gaussian", "smoothadv", "consistency", "macer"]
#: Small settings per method: the attack in L2, as the paper.
SETTINGS = {
    "gaussian": {},
    "smoothadv": {"norm": "l2", "steps": 2, "num_noise": 2},
    "consistency": {},
    "macer": {"num_noise": 4},
}


def keyed_step(name: str, model: torch.nn.Module, keys: np.ndarray, **overrides) -> torch.Tensor:
    """The loss of one step of ``name`` on a copy of ``model``, its noise keyed to ``keys``."""
    inputs, labels = random_batch(len(keys))
    trainer = FakeTrainer(copy.deepcopy(model))
    method = build(name, **(SETTINGS[name] | overrides))
    ctx = StepContext(
        model=trainer.model, attack_model=trainer.model, optimize=trainer.optimize, eps=0.5,
        noise=sample_noise(seed=1, step=7, sample_ids=keys, purpose=3),
    )  # fmt: skip
    return method.step(inputs, labels, ctx).loss


@pytest.mark.parametrize("name", SMOOTHING)
def test_the_noise_is_keyed_per_sample(name: str) -> None:
    model = tiny_cnn()
    ids = np.arange(8)
    first, again = keyed_step(name, model, ids), keyed_step(name, model, ids)
    other = keyed_step(name, model, ids + 100)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_a_samples_noise_does_not_depend_on_its_batch() -> None:
    """Row i is keyed by sample i alone: two half batches draw the whole batch's noise."""
    inputs = torch.rand(8, 1, 6, 6)
    ids = np.arange(8) + 40
    whole = gaussian_noise(inputs, 0.5, 3, sample_noise(0, 2, ids, 1))
    halves = [gaussian_noise(inputs[i : i + 4], 0.5, 3, sample_noise(0, 2, ids[i : i + 4], 1))
              for i in (0, 4)]  # fmt: skip
    assert whole.shape == (8, 3, 1, 6, 6)
    assert torch.equal(whole, torch.cat(halves))


@pytest.mark.parametrize("clip", [False, True])
def test_gaussian_adds_noise_of_std_sigma_clipped_only_when_asked(clip: bool) -> None:
    torch.manual_seed(0)
    model = Recorder(tiny_cnn())
    method = build("gaussian", sigma=0.3, noise_clip=clip)
    inputs, labels = random_batch(64)
    method.step(inputs, labels, FakeTrainer(model).context(eps=0.1))
    (seen,) = model.inputs
    assert seen.shape == inputs.shape
    if clip:
        assert seen.min() >= 0 and seen.max() <= 1
    else:
        assert seen.min() < -0.5 and seen.max() > 1.5  # noise on the 0 and 1 edge pixels
        assert (seen - inputs).std().item() == pytest.approx(0.3, rel=0.02)
        assert (seen - inputs).mean().abs() < 0.01
    assert method.describe()["noise_clip"] is clip and method.describe()["sigma"] == 0.3


def test_consistency_sees_m_copies_of_each_image() -> None:
    torch.manual_seed(0)
    model = Recorder(tiny_cnn())
    inputs, labels = random_batch(8)
    build("consistency", num_noise=3).step(inputs, labels, FakeTrainer(model).context(eps=0.1))
    (seen,) = model.inputs
    copies = seen.unflatten(0, (8, 3))  # sample-major: each image's m copies side by side
    noise = copies - inputs.unsqueeze(1)
    assert noise.std().item() == pytest.approx(0.25, rel=0.05)
    assert not torch.equal(noise[:, 0], noise[:, 1])


def test_consistency_terms_match_their_definition() -> None:
    torch.manual_seed(0)
    logits = torch.randn(5 * 3, 7) * 3
    kl, entropy = consistency_terms(logits, 3)
    probs = F.softmax(logits, dim=1).view(5, 3, 7)
    mean = probs.mean(dim=1)
    expected_kl = sum(
        (mean * (mean.log() - probs[:, i].log())).sum(1) for i in range(3)
    ).mean() / 3  # fmt: skip
    torch.testing.assert_close(kl, expected_kl)
    torch.testing.assert_close(entropy, -(mean * mean.log()).sum(1).mean())
    same_kl, same_entropy = consistency_terms(logits[:7].repeat_interleave(2, dim=0), 2)
    assert same_kl.abs() < 1e-6
    entropy_of_one = -(F.softmax(logits[:7], 1) * F.log_softmax(logits[:7], 1)).sum(1).mean()
    torch.testing.assert_close(same_entropy, entropy_of_one)


def test_smoothed_log_probs_average_the_softmax() -> None:
    logits = torch.randn(4 * 2, 5)
    expected = F.softmax(logits, dim=1).view(4, 2, 5).mean(1).log()
    torch.testing.assert_close(smoothed_log_probs(logits, 2), expected)


def _smoothed_loss(model, inputs, labels, noise_vectors) -> torch.Tensor:
    with torch.no_grad():
        logits = model(noisy_copies(inputs, noise_vectors))
    return F.nll_loss(smoothed_log_probs(logits, noise_vectors.shape[1]), labels, reduction="none")


def test_the_smoothadv_attack_raises_the_smoothed_loss_within_the_l2_ball() -> None:
    """Against a random direction of the same L2 length, which barely moves it."""
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    with torch.no_grad():
        model[-1].weight.mul_(20)  # confident logits: a loss that can rise
    inputs, labels = random_batch(16)
    noise_vectors = gaussian_noise(inputs, 0.25, 4, sample_noise(0, 0, np.arange(16), 0))
    eps = 0.5
    delta = smoothed_pgd_delta(
        model, inputs, labels, noise_vectors, threat=get_threat("l2"), eps=eps, steps=5,
        step_size=2 * eps / 5,
    )  # fmt: skip
    adv = inputs + delta
    assert adv.min() >= 0 and adv.max() <= 1
    assert delta.flatten(1).norm(dim=1).max() <= eps * (1 + 1e-5)
    before = _smoothed_loss(model, inputs, labels, noise_vectors)
    after = _smoothed_loss(model, adv, labels, noise_vectors)
    direction = torch.randn_like(delta)
    direction *= delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1) / direction.flatten(1).norm(
        dim=1
    ).view(-1, 1, 1, 1)
    randomly = _smoothed_loss(model, (inputs + direction).clamp(0, 1), labels, noise_vectors)
    assert (after > before).float().mean() >= 0.9
    assert (after - before).mean() > 5 * (randomly - before).abs().mean()
    assert (after - before).mean() > 0.3
    assert all(p.grad is None for p in model.parameters())


def test_smoothed_pgd_is_checked_keyed_and_restores_the_mode() -> None:
    model = tiny_cnn().train()
    inputs, labels = random_batch(6)
    ids = np.arange(6)
    run = lambda **kw: smoothed_pgd(  # noqa: E731
        model, inputs, labels, eps=0.5, sigma=0.25, num_noise=2, steps=2,
        noise=sample_noise(0, 0, ids, 0), **kw,
    )  # fmt: skip
    first = run()
    assert torch.equal(first, run()) and model.training
    assert get_threat("l2").norm(first - inputs).max() <= 0.5 * (1 + 1e-5)
    with pytest.raises(InputError, match="divide them by 255"):
        smoothed_pgd(model, inputs * 255, labels, eps=0.5, sigma=0.25)
    with pytest.raises(BudgetError, match="did you mean 64/255"):
        smoothed_pgd(model, inputs, labels, eps=0.5, sigma=64)


@pytest.mark.parametrize(
    ("sigma", "message"),
    [(25, r"did you mean 25/255\?"), (0, "> 0"), (-0.5, "> 0"), ("inf", "finite")],
)
def test_a_bad_sigma_is_refused_in_one_line(sigma, message) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        TrainConfig(method="gaussian", sigma=sigma).validate()
    assert "\n" not in str(caught.value)


def test_smoothing_options_are_refused_by_methods_that_ignore_them() -> None:
    for option in ({"sigma": 0.5}, {"noise_clip": True}, {"num_noise": 2},
                   {"consistency_lambda": 20.0}):  # fmt: skip
        with pytest.raises(ConfigError, match=r"is an option of .*method pgd does not take it"):
            METHODS.get("pgd").from_config(TrainConfig(method="pgd", **option))
    with pytest.raises(ConfigError, match="--consistency-eta is an option of consistency"):
        METHODS.get("gaussian").from_config(TrainConfig(method="gaussian", consistency_eta=1.0))


def test_the_papers_defaults() -> None:
    consistency = METHODS.get("consistency").from_config(TrainConfig(method="consistency"))
    assert (consistency.num_noise, consistency.consistency_lambda) == (2, 10.0)
    assert consistency.consistency_eta == 0.5 and consistency.sigma == 0.25
    smoothadv = METHODS.get("smoothadv").from_config(TrainConfig(method="smoothadv", norm="l2"))
    assert (smoothadv.num_noise, smoothadv.steps, smoothadv.noise_clip) == (1, 10, False)
    assert not METHODS.get("gaussian").adversarial and smoothadv.adversarial
    macer = METHODS.get("macer").from_config(TrainConfig(method="macer"))
    assert (macer.num_noise, macer.macer_lambda, macer.macer_gamma, macer.macer_beta) == (
        16, 12.0, 8.0, 16.0,
    )  # fmt: skip


def test_a_run_config_written_before_smoothing_still_loads(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    save_config(TrainConfig(), path)
    added = ("sigma", "noise_clip", "num_noise", "consistency_", "macer_")
    lines = path.read_text().splitlines(True)
    path.write_text("".join(line for line in lines if not line.startswith(added)))
    config = load_config(path, complete=True)
    assert config.sigma is None and config.num_noise is None and not config.noise_clip
    assert math.isclose(load_config(path, {"sigma": "64/255"}).sigma, 64 / 255)


def test_macer_hinges_the_certified_radius_of_correct_samples_only() -> None:
    """Against the paper's formula on hand-made logits: one sample correct with a gap within
    gamma (counted), one misclassified, one certain (p_B = 0: an infinite gap, skipped)."""
    macer = MACERTraining(sigma=0.5, num_noise=2, macer_gamma=8.0, macer_beta=1.0)
    logits = torch.tensor([[[2.0, 0.0, -1.0], [1.0, 0.5, 0.0]],
                           [[0.0, 3.0, 0.0], [0.0, 2.0, 0.0]],
                           [[200.0, 0.0, 0.0], [200.0, 0.0, 0.0]]], requires_grad=True)  # fmt: skip
    labels = torch.tensor([0, 0, 0])
    hinge = macer.radius_hinge(logits, labels)
    probs = F.softmax(logits[0].detach(), dim=1).mean(0).double()
    normal = torch.distributions.Normal(0.0, 1.0)
    gap = normal.icdf(probs[0]) - normal.icdf(probs.sort(descending=True).values[1])
    assert hinge.item() == pytest.approx(0.5 / 2 * (8.0 - gap.item()) / 3, rel=1e-5)
    hinge.backward()
    assert logits.grad.isfinite().all() and logits.grad[1:].abs().max() == 0


def test_macer_defers_its_hinge_for_the_passes_asked() -> None:
    """In a deferred pass the loss is the smoothed cross-entropy alone, after it the hinge too."""
    torch.manual_seed(0)
    model = tiny_cnn().eval()
    inputs, _ = random_batch(8)
    with torch.no_grad():  # labels the model mostly gets right: samples in the hinge
        labels = model(inputs).argmax(1)
    model.train()
    for epoch, hinged in ((0, False), (1, True)):
        torch.manual_seed(0)
        trainer = FakeTrainer(copy.deepcopy(model))
        ctx = dataclasses.replace(trainer.context(eps=0.1), epoch=epoch)
        method = build("macer", num_noise=4, macer_beta=1.0, macer_deferred_epochs=1)
        out = method.step(inputs, labels, ctx)
        classification, robustness = (out.metrics[k] for k in
                                      ("macer_classification", "macer_robustness"))  # fmt: skip
        torch.testing.assert_close(classification, F.nll_loss(out.logits, labels))
        assert robustness > 0
        expected = classification + (12.0 * robustness if hinged else 0.0)
        torch.testing.assert_close(out.loss, expected)


@pytest.mark.parametrize("norm, eps", [("l2", 0.5), ("linf", 0.1)])
def test_smoothadv_trains_on_its_attacked_images_plus_the_keyed_noise(norm: str, eps: float):
    """Every batch the model sees, less the step's own keyed noise (the same first draw), is an
    image within eps of the clean one and inside [0, 1]: the attack's and the update's."""
    model = Recorder(tiny_cnn())
    trainer = FakeTrainer(model)
    inputs, labels = random_batch(8)
    keys = np.arange(8) + 5
    method = build("smoothadv", norm=norm, steps=3, num_noise=3)
    ctx = dataclasses.replace(trainer.context(eps=eps), noise=sample_noise(0, 1, keys, 2))
    method.step(inputs, labels, ctx)
    noise = gaussian_noise(inputs, 0.25, 3, sample_noise(0, 1, keys, 2))
    assert len(model.inputs) == 3 + 1  # T attack steps, then the weight update
    for seen in model.inputs:
        images = seen.unflatten(0, (8, 3)) - noise
        delta = images - inputs.unsqueeze(1)
        assert images.min() >= -1e-6 and images.max() <= 1 + 1e-6
        for copy_ in (1, 2):  # one perturbation under every noise (up to float rounding)
            torch.testing.assert_close(delta[:, copy_], delta[:, 0], rtol=0, atol=1e-6)
        size = get_threat(norm).norm(delta[:, 0])
        assert size.max() <= eps * (1 + 1e-5) + 1e-6
    assert size.min() > 0.5 * eps  # the update's images were attacked


def test_a_smoothing_run_records_its_noise_and_selects_by_clean_accuracy(fashion_small, tmp_path):
    """Through the trainer: model.json names sigma and the clip choice; without an attack the
    best epoch is the one of best clean validation accuracy (as natural training's)."""
    from advkit import runs
    from advkit.training import train

    config = TrainConfig(
        dataset="fashion-mnist", model="cnn-small", method="gaussian", sigma=0.5,
        noise_clip=True, epochs=2, batch_size=128, lr=0.05, val_examples=64, val_steps=1,
        quiet=True, seed=1,
    )  # fmt: skip
    result = train(config, tmp_path, data=fashion_small)
    method = runs.load_metadata(tmp_path)["method"]
    assert method["name"] == "gaussian" and method["sigma"] == 0.5
    assert method["noise_clip"] is True and method["num_noise"] == 1
    best = max(range(2), key=lambda i: (result.history[i]["val_clean"], -i))
    assert result.selected_epoch == best + 1
