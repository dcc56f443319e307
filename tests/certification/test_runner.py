"""CERTIFY over a test set: a killed certification resumes to the uninterrupted result, and two
workers give the single process's certificates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from advkit.certification.runner import certify_samples
from advkit.certification.smoothing import Smooth
from advkit.data.tensors import TensorData
from advkit.distributed import World
from tests.distributed.spawn import run_workers

SAMPLES = 7


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()


def _data() -> TensorData:
    gen = torch.Generator().manual_seed(1)
    return TensorData(
        torch.rand(10, 1, 4, 4, generator=gen), torch.randint(0, 3, (10,), generator=gen)
    )


class Killed(Exception):
    pass


class DiesAfter(nn.Module):
    """The model, raising (a kill) after ``calls`` forward passes."""

    def __init__(self, model: nn.Module, calls: int) -> None:
        super().__init__()
        self.model, self.calls = model, calls

    def forward(self, x: Tensor) -> Tensor:
        self.calls -= 1
        if self.calls < 0:
            raise Killed
        return self.model(x)


def _certify(model: nn.Module, world: World | None = None, state: Path | None = None):
    return certify_samples(
        Smooth(model, 0.25, seed=2), _data(), list(range(0, 10))[:SAMPLES], n0=10, n=120,
        alpha=0.01, batch_size=50, state_path=state, world=world, quiet=True, save_every=0.0,
    )  # fmt: skip


def _same(a, b) -> None:
    for name in ("indices", "labels", "predictions", "radii"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_a_killed_certification_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    model = _model()
    whole = _certify(model)
    assert len(set(whole.predictions.tolist())) > 1 or whole.radii.std() > 0  # not degenerate
    state = tmp_path / "cert.state.pt"
    # 1 probe of the classes, then 4 forwards per sample (1 selection + 3 estimation chunks):
    # killed in the middle of the fourth sample
    with pytest.raises(Killed):
        _certify(DiesAfter(model, 1 + 4 * 3 + 2), state=state)
    assert state.exists()
    resumed_model = DiesAfter(model, 10_000)
    resumed = _certify(resumed_model, state=state)
    _same(resumed, whole)
    assert 10_000 - resumed_model.calls == 1 + 4 * (SAMPLES - 3)  # the three saved are not redone
    assert state.exists()  # kept until the report is written (Certification.write)


def _sharded(world: World) -> dict:
    torch.set_num_threads(1)
    result = _certify(_model(), world=world)
    return None if result is None else vars(result)


def test_two_workers_certify_what_one_process_does(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _certify(_model())
    finally:
        torch.set_num_threads(threads)
    first, second = run_workers(_sharded, tmp_path)
    assert second is None
    for name in ("indices", "labels", "predictions", "radii"):
        np.testing.assert_array_equal(first[name], getattr(single, name), err_msg=name)
