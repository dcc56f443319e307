"""The certification's report: radii table, ACR, cap, the empirical column and its flag, the
attack on the smoothed classifier, and the Python entry points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import advkit
from advkit.certification.empirical import EmpiricalPoint, attack_smoothed
from advkit.certification.report import Certification, default_radii
from advkit.certification.runner import SampleResults
from advkit.noise import sample_noise
from tests.certification.test_smoothing import Linear2


def _certification(**kwargs) -> Certification:
    results = SampleResults(
        indices=np.arange(4), labels=np.array([0, 1, 1, 0]),
        predictions=np.array([0, 1, -1, 1]), radii=np.array([0.3, 0.1, 0.0, 0.5]),
        seconds=np.ones(4),
    )  # fmt: skip
    return Certification(results, sigma=0.25, n0=10, n=100, alpha=0.01, seed=0, batch_size=10,
                         skip=1, radii=[0, 0.25, 0.5], **kwargs)  # fmt: skip


def test_table_acr_and_cap() -> None:
    cert = _certification()
    assert [row["certified"] for row in cert.table()] == [2, 1, 0]  # the wrong one never counts
    assert cert.average_certified_radius() == pytest.approx((0.3 + 0.1) / 4)
    assert [row["above_cap"] for row in cert.table()] == [False, False, True]  # cap 0.42
    assert default_radii(0.42) == [0, 0.25, 0.5]
    assert default_radii(0.5) == [0, 0.25, 0.5, 0.75]


def test_certified_above_empirical_beyond_sampling_error_is_flagged_as_a_bug() -> None:
    honest = EmpiricalPoint(0.25, 40, 30, 50, (0.66, 0.9), (0.45, 0.73), 0, (0.66, 0.9))
    broken = EmpiricalPoint(0.5, 5, 45, 50, (0.03, 0.22), (0.78, 0.97), 2, (0.05, 0.26))
    cert = _certification(empirical=[honest, broken])
    assert not honest.suspicious and broken.suspicious
    (flag,) = cert.flags()
    assert flag.startswith("BUG") and "radius 0.5" in flag
    assert "BUG: certified > empirical" in cert.markdown()
    assert cert.to_dict()["flags"] == [flag]


def test_attack_on_the_smoothed_classifier_stays_in_budget_and_finds_the_linear_optimum() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=gen)
    model = Linear2(w, -0.5 * float(w.sum()))
    inputs = 0.25 + 0.5 * torch.rand(32, 1, 4, 4, generator=gen)
    score = inputs.flatten(1) @ w + model.b
    labels = (score > 0).long()
    true_radius = score.abs() / w.norm()
    r = 0.3
    noise = sample_noise(0, 0, np.arange(32), 9)
    adv = attack_smoothed(model, inputs, labels, r, sigma=0.25, m=8, steps=10, noise=noise)
    assert float((adv - inputs).flatten(1).norm(dim=1).max()) <= r + 1e-5
    assert adv.min() >= 0 and adv.max() <= 1
    flipped = (adv.flatten(1) @ w + model.b > 0).long() != labels
    # every sample whose exact radius is below r (with room for the [0, 1] box) is broken,
    # none whose radius is above r
    assert flipped[true_radius < 0.8 * r].all() and len(flipped[true_radius < 0.8 * r]) > 3
    assert not flipped[true_radius > r].any()


def test_python_entry_points_match_the_command(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    images, labels = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 0])
    cert = advkit.certify(net, (images, labels), sigma=0.25, n0=10, n=100, alpha=0.01,
                          batch_size=50, empirical_examples=0, quiet=True,
                          out_dir=tmp_path)  # fmt: skip
    (written,) = tmp_path.glob("cert-*.json")
    assert not list(tmp_path.glob("*.state.pt"))  # removed once the report is written
    data = json.loads(written.read_text())
    assert data["per_sample"]["prediction"] == cert.results.predictions.tolist()
    certificates = advkit.smooth(net, 0.25).certify(images, 10, 100, 0.01, batch_size=50)
    assert [c.prediction for c in certificates] == cert.results.predictions.tolist()
    assert [c.radius for c in certificates] == pytest.approx(cert.results.radii.tolist())


def test_the_noise_warning_reads_the_runs_method() -> None:
    from advkit.certification.session import noise_warning

    assert "without Gaussian noise" in noise_warning({"name": "pgd", "steps": 7}, 0.25)
    assert noise_warning({"name": "gaussian", "sigma": 0.25}, 0.25) is None
    assert "trained with noise sigma 0.5" in noise_warning({"name": "gaussian", "sigma": 0.5}, 0.25)
    assert noise_warning(None, 0.25) is None  # a model advkit did not train: nothing known


def test_no_certificate_is_beaten_by_the_attack_on_a_linear_model() -> None:
    from advkit.certification.session import run_certification
    from advkit.data.tensors import TensorData

    gen = torch.Generator().manual_seed(0)
    w = torch.randn(16, generator=gen)
    model = Linear2(w, -0.5 * float(w.sum()))
    images = 0.25 + 0.5 * torch.rand(12, 1, 4, 4, generator=gen)
    labels = ((images.flatten(1) @ w + model.b) > 0).long()
    cert = run_certification(
        model, TensorData(images, labels), sigma=0.25, n0=20, n=500, alpha=0.01, batch_size=250,
        radii=[0, 0.1, 0.2, 0.3], empirical_examples=12, empirical_n=200, quiet=True,
    )  # fmt: skip
    assert cert is not None and cert.flags() == []
    for point in cert.empirical:
        assert point.certified <= point.robust + point.abstained
    assert any(point.robust < point.n for point in cert.empirical)  # the attack does break some
