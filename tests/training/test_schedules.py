from __future__ import annotations

import pytest
import torch

from advkit.training.schedules import SCHEDULES, build_scheduler


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_schedule_bounded_and_ends_low(name):
    values = [SCHEDULES.get(name)(i / 100) for i in range(101)]
    assert all(0 <= v <= 1 for v in values)
    if name != "constant":
        assert values[-1] < 0.05


def test_cyclic_peaks_at_two_fifths():
    schedule = SCHEDULES.get("cyclic")
    assert schedule(0.4) == pytest.approx(1.0)
    assert schedule(0.2) == pytest.approx(0.5)


def test_warmup_ramps():
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, "constant", total_updates=100, warmup_updates=10)
    lrs = []
    for _ in range(12):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs == sorted(lrs)
