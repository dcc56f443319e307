"""Two gloo workers streaming an image folder (one spawn for every check): each reads its own
shard of every global batch, disjoint, their union in rank order the batch one process reads;
the batches are the in-memory path's to the bit; the statistics' pass, shared out over the
workers, gives one process's numbers to the bit; and a streamed run trains the in-memory one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from advkit.config import TrainConfig
from advkit.data import load_dataset, open_splits
from advkit.distributed import World
from advkit.training import Trainer
from advkit.training.data_feed import DataFeed
from tests.data.folders import write_image_folder
from tests.distributed.spawn import run_workers

CPU = torch.device("cpu")


def _config(root: Path, **extra: Any) -> TrainConfig:
    base = dict(
        dataset="imagefolder", data_dir=str(root), model="cnn-small", method="pgd", steps=1,
        epochs=1, batch_size=16, lr=0.05, val_size=8, val_examples=8, val_steps=1, quiet=True,
        seed=5, augment="crop-flip",
    )  # fmt: skip
    return TrainConfig(**(base | extra))


def _batches(feed: DataFeed) -> list[dict[str, Any]]:
    return [
        {"ids": b.ids, "inputs": b.inputs, "labels": b.labels, "at": (b.index, b.step)}
        for b in feed.batches(epoch=1, start_batch=1, first_step=4)
    ]


def on_each_worker(world: World, small: str, images: str) -> dict[str, Any]:
    config = _config(Path(images), data_loading="stream", data_workers=1)
    streamed = DataFeed(open_splits("imagefolder", images, val_size=8, seed=5), config, CPU, world)
    in_memory = DataFeed(load_dataset("imagefolder", images, val_size=8, seed=5),
                         _config(Path(images)), CPU, world)  # fmt: skip
    results = {"streamed": _batches(streamed), "memory": _batches(in_memory)}
    streamed.close()
    stats = open_splits("imagefolder", small, val_size=0)
    reader = stats.train.reader(1)
    results["stats"] = stats.compute_stats(reader, world)
    reader.close()
    weights = {}
    for path in ("stream", "memory"):
        trainer = Trainer(_config(Path(images), data_loading=path, data_workers=1), world=world)
        trainer.fit()
        weights[path] = trainer.model.state_dict()
    results["weights"] = weights
    return results


@pytest.fixture(scope="module")
def workers(tmp_path_factory) -> tuple[list[dict[str, Any]], Path, Path]:
    root = tmp_path_factory.mktemp("streamed")
    small = write_image_folder(root / "small", 1100, 2, size=(3, 2), mode="RGB")  # 2 chunks
    images = write_image_folder(root / "images", 57, 2)  # 49 training images: 16, 16, 16, 1
    return run_workers(on_each_worker, root, str(small), str(images)), small, images


def test_workers_stream_disjoint_shards_of_the_global_batch(workers):
    (rank0, rank1), _, images = workers
    one = DataFeed(load_dataset("imagefolder", images, val_size=8, seed=5), _config(images), CPU,
                   World())  # fmt: skip
    whole = _batches(one)  # batches 1, 2 and 3 of epoch 1
    assert [len(b["ids"]) for b in whole] == [16, 16, 1]  # the last: fewer than the workers
    assert len(rank0["streamed"]) == len(rank1["streamed"]) == 2  # it is skipped on both
    for first, second, together in zip(
        rank0["streamed"], rank1["streamed"], whole[:2], strict=True
    ):
        assert first["at"] == second["at"] == together["at"]
        assert not set(first["ids"].tolist()) & set(second["ids"].tolist())
        assert torch.equal(torch.cat([first["ids"], second["ids"]]), together["ids"])
        assert torch.equal(torch.cat([first["inputs"], second["inputs"]]), together["inputs"])


def test_each_worker_streams_its_in_memory_batches(workers):
    for rank in workers[0]:
        for got, want in zip(rank["streamed"], rank["memory"], strict=True):
            assert got["at"] == want["at"]
            for key in ("ids", "inputs", "labels"):
                assert torch.equal(got[key], want[key]), key


def test_the_shared_statistics_pass_gives_one_process_numbers(workers):
    (rank0, rank1), small, _ = workers
    memory = load_dataset("imagefolder", small, val_size=0)
    assert rank0["stats"] == rank1["stats"] == (memory.mean, memory.std)


def test_a_streamed_run_on_two_workers_trains_their_in_memory_model(workers):
    (rank0, rank1), _, _ = workers
    for name, value in rank0["weights"]["memory"].items():
        assert torch.equal(rank0["weights"]["stream"][name], value), name
        assert torch.equal(rank1["weights"]["stream"][name], value), name
