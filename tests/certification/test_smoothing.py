"""PREDICT and CERTIFY on models whose smoothed classifier is known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import Tensor, nn

from advkit.certification import ABSTAIN, smooth
from advkit.certification.smoothing import ESTIMATION, SELECTION, CertifyArgumentError, Smooth
from advkit.certification.statistics import clopper_pearson_lower, radius_cap


class Linear2(nn.Module):
    """f(x) = 1 if w.x + b > 0 else 0, as logits (0, w.x + b)."""

    def __init__(self, w: Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, x: Tensor) -> Tensor:
        score = x.flatten(1) @ self.w + self.b
        return torch.stack([torch.zeros_like(score), score], 1)


class Constant(nn.Module):
    def __init__(self, label: int, classes: int = 3) -> None:
        super().__init__()
        self.label, self.classes = label, classes
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        out = torch.zeros(len(x), self.classes) + 0 * self.anchor
        out[:, self.label] = 1
        return out


class Recorder(nn.Module):
    """Records the batches it sees, answers class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.clone())
        return torch.zeros(len(x), 2)


def _linear_case() -> tuple[Linear2, Tensor, Tensor]:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=gen)
    model = Linear2(w, -0.5 * float(w.sum()))  # the boundary crosses the middle of [0, 1]^16
    inputs = torch.rand(24, 1, 4, 4, generator=gen)
    return model, inputs, (inputs.flatten(1) @ w + model.b)


def test_certified_radius_never_exceeds_the_true_one_of_a_linear_model() -> None:
    model, inputs, score = _linear_case()
    sigma = 0.25
    # For a linear f the smoothed classifier is f itself, with p_A = Phi(|s| / (sigma ||w||)):
    # its exact robust radius is |w.x + b| / ||w||.
    true_radius = score.abs() / model.w.norm()
    certificates = smooth(model, sigma).certify(inputs, 50, 2000, 0.001, batch_size=500)
    certified = [c for c in certificates if not c.abstained]
    assert len(certified) >= len(certificates) // 2  # the test has teeth
    for cert, truth, s in zip(certificates, true_radius, score, strict=True):
        if cert.abstained:
            continue
        assert cert.prediction == int(s > 0)
        assert cert.radius <= float(truth)
        # and within sampling error of it: p_A's estimate from 2000 draws
        p_true = norm.cdf(float(truth) / sigma)
        assert abs(cert.count / 2000 - p_true) < 5 * np.sqrt(p_true * (1 - p_true) / 2000) + 1e-3


def test_abstains_exactly_when_the_lower_bound_is_below_one_half() -> None:
    model, inputs, _ = _linear_case()
    # some near the boundary, some far: both outcomes
    sigma, n, alpha = 0.25, 200, 0.01
    certificates = smooth(model, sigma).certify(inputs, 20, n, alpha, batch_size=100)
    outcomes = {c.abstained for c in certificates}
    assert outcomes == {True, False}
    for cert in certificates:
        assert cert.p_lower == pytest.approx(clopper_pearson_lower(cert.count, n, alpha))
        assert cert.abstained == (cert.p_lower < 0.5)
        if not cert.abstained:
            assert cert.radius == pytest.approx(sigma * norm.ppf(cert.p_lower))


def test_abstention_boundary_count(monkeypatch: pytest.MonkeyPatch) -> None:
    n, alpha = 100, 0.01
    first = next(k for k in range(n + 1) if clopper_pearson_lower(k, n, alpha) >= 0.5)
    for count, abstains in ((first - 1, True), (first, False)):
        answers = iter([np.array([5, 0]), np.array([count, n - count])])
        monkeypatch.setattr(Smooth, "counts", lambda self, *a, answers=answers, **k: next(answers))
        cert = Smooth(Constant(0, 2), 0.25).certify_one(torch.zeros(1, 2, 2), 5, n, alpha,
                                                        sample_id=0)  # fmt: skip
        assert cert.abstained == abstains


def test_a_constant_classifier_certifies_at_the_cap() -> None:
    sigma, n, alpha = 0.5, 300, 0.001
    certificates = smooth(Constant(2), sigma).certify(torch.rand(3, 1, 4, 4), 10, n, alpha)
    for cert in certificates:
        assert cert.prediction == 2 and cert.count == n
        assert cert.radius == pytest.approx(radius_cap(sigma, n, alpha), rel=1e-9)


def test_predict_returns_the_class_or_abstains() -> None:
    assert int(smooth(Constant(1), 0.25).predict(torch.rand(1, 2, 2), 50, 0.01)) == 1
    model = Linear2(torch.tensor([1.0, 0, 0, 0]), -0.5)  # p_A = 1/2 exactly on the boundary
    on_boundary = torch.full((4, 1, 2, 2), 0.5)
    assert smooth(model, 0.5).predict(on_boundary, 400, 0.001).tolist() == [ABSTAIN] * 4


def test_selection_and_estimation_draws_are_separate_and_keyed() -> None:
    recorder = Recorder()
    smoothed = Smooth(recorder, 0.25, seed=3)
    x = torch.full((1, 2, 2), 0.5)
    smoothed.certify_one(x, 8, 8, 0.5, sample_id=7, batch_size=8)
    selection, estimation = recorder.seen[-2], recorder.seen[-1]
    assert not torch.equal(selection, estimation)
    # each draw is keyed by (sample, draw number, purpose): not by batch size or other samples
    for purpose, expected in ((SELECTION, selection), (ESTIMATION, estimation)):
        recorder.seen.clear()
        smoothed.counts(x, 8, sample_id=7, purpose=purpose, batch_size=3)
        assert torch.equal(torch.cat(recorder.seen), expected)
    recorder.seen.clear()
    smoothed.counts(x, 8, sample_id=8, purpose=SELECTION, batch_size=8)
    assert not torch.equal(recorder.seen[0], selection)
    # noise is added in pixel space and not clipped
    assert float((selection - x).std()) == pytest.approx(0.25, rel=0.5)


def test_noise_is_not_clipped() -> None:
    recorder = Recorder()
    Smooth(recorder, 1.0).counts(torch.ones(1, 4, 4), 50, sample_id=0, purpose=SELECTION)
    assert float(recorder.seen[-1].max()) > 1.5  # a clipped draw would stop at 1


@pytest.mark.parametrize(
    ("sigma", "match"),
    [(0, "above 0"), (-1, "above 0"), (float("nan"), "finite"), (8, "did you mean 8/255")],
)
def test_bad_sigma_is_one_line(sigma: float, match: str) -> None:
    with pytest.raises(CertifyArgumentError, match=match) as error:
        smooth(Constant(0), sigma)
    assert "\n" not in str(error.value)
