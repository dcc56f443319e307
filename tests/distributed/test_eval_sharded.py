"""Evaluation sharded over two workers gives the single process's per-sample outcomes, for
every suite: chunks are dealt round-robin, each seeded by (seed, phase, chunk) as alone, and
the outcomes are joined without padding or duplicates. One spawn runs every suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from advkit.config import TrainConfig
from advkit.data import load_dataset
from advkit.distributed import World
from advkit.evaluation import SUITES, evaluate
from advkit.models import create_model
from advkit.training import Trainer
from tests.conftest import FASHION_DIR
from tests.distributed.spawn import run_workers

pytestmark = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST missing"
)

EXAMPLES = 80  # 3 chunks of 32: worker 0 takes chunks 0 and 2, worker 1 chunk 1


def evaluate_all(world: World, weights: str, meta: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    model = create_model("cnn-small", num_classes=10, mean=meta["mean"], std=meta["std"])
    model.load_state_dict(torch.load(weights, weights_only=True))
    model.eval()
    test = load_dataset("fashion-mnist", val_size=0).test
    images, labels = test.images[:EXAMPLES], test.labels[:EXAMPLES]
    results = {}
    for suite in SUITES.names():
        result = evaluate(model, images, labels, suite, eps=0.1, batch_size=32, seed=1, world=world)
        results[suite] = {"clean": result.clean, "robust": result.robust,
                          "worst": result.worst_case}  # fmt: skip
    return results


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory, fashion_small):
    root = tmp_path_factory.mktemp("eval-sharded")
    config = TrainConfig(method="fast", epochs=1, batch_size=64, val_examples=0, quiet=True)
    trainer = Trainer(config, data=fashion_small)
    trainer.fit()
    weights = root / "weights.pt"
    torch.save(trainer.model.state_dict(), weights)
    meta = {"mean": trainer.input_mean, "std": trainer.input_std}
    threads = torch.get_num_threads()
    try:
        single = evaluate_all(World(), str(weights), meta)
    finally:
        torch.set_num_threads(threads)
    return single, run_workers(evaluate_all, Path(root), str(weights), meta)


@pytest.mark.parametrize("suite", SUITES.names())
def test_sharded_evaluation_equals_one_process(outcomes, suite):
    single, workers = outcomes
    mine = single[suite]
    assert 0 < int(mine["clean"].sum()) < EXAMPLES  # attacks ran on several chunks
    for rank in workers:
        theirs = rank[suite]
        assert torch.equal(theirs["clean"], mine["clean"])
        assert torch.equal(theirs["worst"], mine["worst"])
        for name, values in mine["robust"].items():
            assert torch.equal(theirs["robust"][name], values), name
