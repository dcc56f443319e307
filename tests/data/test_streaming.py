"""The streamed data path: image folders and user Datasets read item by item give what the
in-memory path gives, bit for bit (splits, statistics, batches); what is wrong is one line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset

from advkit import runs
from advkit.config import TrainConfig
from advkit.data import (
    DataError,
    StreamingData,
    StreamingSplits,
    load_dataset,
    open_splits,
    stream_splits,
    unit_float,
)
from advkit.data.readers import image_folder
from advkit.distributed import World
from advkit.training.data_feed import DataFeed
from tests.data.folders import write_image_folder


@dataclass(frozen=True)
class ShardWorld(World):
    """Rank ``rank`` of ``size`` without a process group: the feed's one collective (taking rank
    0's decision) is the identity, so every rank's batches can be read in one process."""

    def broadcast_object(self, obj):
        return obj


def _config(**extra) -> TrainConfig:
    base = dict(dataset="imagefolder", batch_size=16, augment="crop-flip", seed=5, val_examples=7)
    return TrainConfig(**(base | extra))


def _feed(splits, world: World | None = None, **config) -> DataFeed:
    return DataFeed(splits, _config(**config), torch.device("cpu"), world or World())


def _read(feed: DataFeed, epoch: int, start_batch: int = 0, first_step: int = 0) -> list:
    return list(feed.batches(epoch=epoch, start_batch=start_batch, first_step=first_step))


def _assert_same_batches(got: list, want: list) -> None:
    assert len(got) == len(want) > 0
    for a, b in zip(got, want, strict=True):
        assert (a.index, a.step, a.global_size) == (b.index, b.step, b.global_size)
        assert torch.equal(a.ids, b.ids) and torch.equal(a.labels, b.labels)
        assert a.inputs.dtype == torch.float32 and torch.equal(a.inputs, b.inputs)


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_streamed_splits_are_the_in_memory_splits(tmp_path, mode, no_env):
    """The same held-out validation examples, the same pixels, labels and classes, and the
    training statistics to the bit: over 1100 images (two chunks of the statistics' pass)."""
    root = write_image_folder(tmp_path, 1100, 5, size=(4, 3), mode=mode)
    memory = load_dataset("imagefolder", root, val_size=30, subset=1000, seed=2)
    streamed = open_splits("imagefolder", root, val_size=30, subset=1000, seed=2)
    assert isinstance(streamed, StreamingSplits) and streamed.mean is None  # nothing decoded
    for part in ("train", "val", "test"):
        want, got = getattr(memory, part), getattr(streamed, part)
        assert torch.equal(got.labels, want.labels)
        taken = got.take(torch.arange(len(got)), workers=1)
        assert torch.equal(taken.images, want.images) and torch.equal(taken.labels, want.labels)
    assert (streamed.num_classes, streamed.class_names) == (memory.num_classes, memory.class_names)
    assert streamed.compute_stats() == (memory.mean, memory.std)


@pytest.fixture
def decoded(monkeypatch) -> list:
    """The files the image-folder readers decode, in order."""
    seen = []
    original = image_folder.decode_image

    def counting(path, mode, size):
        seen.append(path)
        return original(path, mode, size)

    monkeypatch.setattr("advkit.data.items.decode_image", counting)
    monkeypatch.setattr(image_folder, "decode_image", counting)
    return seen


def test_listing_decodes_nothing_and_take_decodes_only_what_it_takes(tmp_path, decoded):
    root = write_image_folder(tmp_path, 20, 6)
    splits = open_splits("imagefolder", root, val_size=4)
    assert decoded == []
    test = splits.test.take(torch.arange(3))
    assert len(test) == 3 and len(decoded) == 3


def test_evaluation_decodes_only_the_test_examples_it_evaluates(tmp_path, decoded):
    """It used to read the whole folder, every training image included."""
    root = write_image_folder(tmp_path, 20, 6)
    meta = {"dataset": "imagefolder", "data_dir": str(root), "num_classes": 3,
            "input_shape": [1, 28, 28], "mean": [0.5], "std": [0.25]}  # fmt: skip
    splits = runs.load_test_data(meta)
    assert decoded == [] and len(splits.test) == 6
    splits.test.take(torch.arange(4))
    assert [p.parent.parent.name for p in decoded] == ["test"] * 4


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_batches_are_the_in_memory_batches(tmp_path, workers, no_env):
    """crop-flip keyed per sample, a last batch of 13, two epochs, a mid-epoch start: the same
    float batches to the bit as the in-memory path, which also serves the folder decoded."""
    root = write_image_folder(tmp_path, 53, 3)
    memory = _feed(load_dataset("imagefolder", root, val_size=8, seed=5))
    streamed = _feed(open_splits("imagefolder", root, val_size=8, seed=5),
                     data_loading="stream", data_workers=workers)  # fmt: skip
    decoded = _feed(open_splits("imagefolder", root, val_size=8, seed=5),
                    data_loading="memory", data_workers=workers)  # fmt: skip
    paths = (memory.path.path, streamed.path.path, decoded.path.path)
    assert paths == ("memory", "stream", "memory")
    assert torch.equal(streamed.val.images, memory.val.images) and len(memory.val) == 7
    try:
        for epoch in (0, 1):
            want = _read(memory, epoch, first_step=3 * epoch)
            assert [len(b.ids) for b in want] == [16, 16, 13]
            _assert_same_batches(_read(streamed, epoch, first_step=3 * epoch), want)
            _assert_same_batches(_read(decoded, epoch, first_step=3 * epoch), want)
        _assert_same_batches(_read(streamed, 1, 2, 5), _read(memory, 1, 2, 5))
        _assert_same_batches(_read(streamed, 0, 0, 0), _read(memory, 0, 0, 0))  # after a cut
    finally:
        streamed.close()


def test_each_rank_streams_its_shard_of_the_in_memory_batches(tmp_path, no_env):
    """Two ranks: disjoint slices whose union, in rank order, is the global batch; a last batch
    of one image (fewer than the ranks) is skipped on both, as in memory. (Without statistics:
    their pass is a collective, checked on real workers in tests/distributed.)"""
    root = write_image_folder(tmp_path, 41, 3)
    memory_splits = load_dataset("imagefolder", root, val_size=8, seed=5)
    global_batches = _read(_feed(memory_splits), 0)
    assert [len(b.ids) for b in global_batches] == [16, 16, 1]
    shards = []
    for rank in range(2):
        world = ShardWorld(rank, 2)
        streamed = _feed(open_splits("imagefolder", root, val_size=8, seed=5), world,
                         data_loading="stream", data_workers=1, normalize=False)  # fmt: skip
        in_memory = _feed(memory_splits, world)
        got = _read(streamed, 0)
        streamed.close()
        _assert_same_batches(got, _read(in_memory, 0))
        shards.append(got)
    assert [len(s) for s in shards] == [2, 2]
    for b, whole in enumerate(global_batches[:2]):
        first, second = shards[0][b].ids, shards[1][b].ids
        assert not set(first.tolist()) & set(second.tolist())
        assert torch.equal(torch.cat([first, second]), whole.ids)


# --- user Datasets ----------------------------------------------------------------------------


class Items(Dataset):
    """A user's map-style Dataset: images made by ``make`` from index i, label i % 3."""

    def __init__(self, make, count: int = 24, targets: bool = False) -> None:
        self.make, self.count, self.calls = make, count, 0
        if targets:
            self.targets = [i % 3 for i in range(count)]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        self.calls += 1
        return self.make(i), i % 3


def _pixels(i: int) -> np.ndarray:
    return np.random.default_rng(i).integers(0, 256, (8, 6), dtype=np.uint8)


IMAGE_KINDS = {
    "uint8 (H, W) tensor": lambda i: torch.from_numpy(_pixels(i)),
    "uint8 (C, H, W) array": lambda i: _pixels(i)[None],
    "PIL image": lambda i: Image.fromarray(_pixels(i)),
    "float (C, H, W) in [0, 1]": lambda i: torch.from_numpy(_pixels(i)[None] / 255.0),
}


def _expected(kind: str) -> torch.Tensor:
    images = torch.stack([torch.from_numpy(_pixels(i)[None]) for i in range(24)])
    return images / 255.0 if kind.startswith("float") else images


@pytest.mark.parametrize("kind", list(IMAGE_KINDS))
def test_a_user_dataset_reads_as_its_tensors(kind):
    data = StreamingData.from_dataset(Items(IMAGE_KINDS[kind]))
    assert data.image_shape == (1, 8, 6) and len(data) == 24
    assert data.dtype == (torch.float32 if kind.startswith("float") else torch.uint8)
    assert data.labels.tolist() == [i % 3 for i in range(24)]
    for workers in (0, 1):
        reader = data.reader(workers)
        (images, labels), (rest, _) = reader.read([torch.tensor([3, 1, 4]), torch.arange(24)])
        reader.close()
        assert torch.equal(images, _expected(kind).to(data.dtype)[[3, 1, 4]])
        assert labels.tolist() == [0, 1, 1] and len(rest) == 24


def _train_through_feed(kind: str) -> None:
    data = StreamingData.from_dataset(Items(IMAGE_KINDS[kind]))
    splits = stream_splits(data, val_size=4, seed=1)
    assert (len(splits.train), len(splits.val), splits.num_classes) == (20, 4, 3)
    stored = _expected(kind).to(data.dtype)
    feed = _feed(splits, data_loading="stream", data_workers=1, augment="none")
    batches = _read(feed, 0)
    feed.close()
    assert sorted(torch.cat([b.ids for b in batches]).tolist()) == list(range(20))
    for batch in batches:
        images = stored[splits.train.indices[batch.ids]]
        assert torch.equal(batch.inputs, unit_float(images))
        assert torch.equal(batch.labels, splits.train.labels[batch.ids])
    assert torch.equal(feed.val.images, stored[splits.val.indices[:4]])


@pytest.mark.parametrize("kind", [k for k in IMAGE_KINDS if not k.startswith("float")])
def test_a_user_dataset_trains_through_the_streamed_feed(kind):
    _train_through_feed(kind)


def test_a_float_user_dataset_trains_through_the_streamed_feed():
    _train_through_feed("float (C, H, W) in [0, 1]")


def test_user_dataset_labels_come_without_a_pass_when_known():
    counted = Items(IMAGE_KINDS["uint8 (H, W) tensor"])
    StreamingData.from_dataset(counted)
    assert counted.calls == 24 + 1  # one pass for the labels, item 0 for the shape
    pil = IMAGE_KINDS["PIL image"]
    for dataset, labels in ((Items(pil, targets=True), None), (Items(pil), list(range(24)))):
        data = StreamingData.from_dataset(dataset, [i % 3 for i in labels] if labels else None)
        assert dataset.calls == 1 and data.labels.tolist() == [i % 3 for i in range(24)]


class Flaky(Items):
    """Returns another label the second time an index is read: not a fixed dataset."""

    def __getitem__(self, i: int):
        self.calls += 1
        return _pixels(i), (i + (self.calls > 30)) % 3


def _bad(i: int):
    if i == 5:
        raise KeyError("no such record")
    return _pixels(i)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda i: _pixels(i).astype(np.int64), "has dtype torch.int64; return uint8"),
        (lambda i: torch.linspace(0, 255 if i == 7 else 1, 48).view(8, 6), r"in 0..255; float"),
        (lambda i: _pixels(i)[: 8 - (i == 9)], r"item 9 of Items is a torch.uint8 \(1, 7, 6\)"),
        (_bad, "item 5 of Items failed: KeyError: 'no such record'"),
        (lambda i: "x", "is a str; return the image as a tensor"),
    ],
)
@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_user_item_is_a_one_line_error(make, message, workers):
    with pytest.raises(DataError, match=message) as error:
        data = StreamingData.from_dataset(Items(make), labels=[i % 3 for i in range(24)])
        data.take(torch.arange(24), workers=workers)
    assert "\n" not in str(error.value)


def test_a_dataset_changing_its_labels_or_without_len_is_refused():
    data = StreamingData.from_dataset(Flaky(_pixels))
    with pytest.raises(DataError, match="the dataset must return the same item for an index"):
        data.take(torch.arange(24))

    class Stream(IterableDataset):
        def __iter__(self):
            yield _pixels(0), 0

    with pytest.raises(DataError, match="no len\\(\\): stream a map-style Dataset"):
        StreamingData.from_dataset(Stream())
    with pytest.raises(DataError, match=r"label 0\.5 at index 0 is not a whole number"):
        StreamingData.from_dataset(Items(_pixels), labels=[0.5] * 24)

    class Named(Items):
        def __getitem__(self, i: int):
            return _pixels(i), "ant"

    with pytest.raises(
        DataError, match="item 0 of Named has label 'ant'; labels must be class indices"
    ):
        StreamingData.from_dataset(Named(_pixels), labels=[0] * 24).take(torch.arange(2))
    with pytest.raises(
        DataError, match=r"Named: labels must be class indices 0..C-1 \(integers\), got dtype <U3"
    ):
        StreamingData.from_dataset(Named(_pixels))


def test_a_corrupt_image_met_while_streaming_names_the_file(tmp_path, no_env):
    root = write_image_folder(tmp_path, 12, 2)
    bad = sorted((root / "train" / "bee").iterdir())[1]
    splits = open_splits("imagefolder", root, val_size=0)
    bad.write_bytes(b"\x89PNG broken after the listing")
    with pytest.raises(DataError, match="is not a readable image") as error:
        splits.train.take(torch.arange(12), workers=1)
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
