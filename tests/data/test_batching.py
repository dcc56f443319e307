"""Splits, resumable ordering, batch iteration and augmentation (all on small synthetic data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from advkit.data import (
    DataError,
    TensorData,
    augment_batch,
    channel_stats,
    epoch_order,
    iterate_batches,
    load_dataset,
    num_batches,
)


def _data(n: int = 50, shape: tuple[int, ...] = (3, 8, 8)) -> TensorData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    return TensorData(images, torch.arange(n) % 10)


@pytest.fixture
def npz_path(tmp_path, make):
    path = tmp_path / "toy.npz"
    np.savez(path, **make.arrays(100, 20, (6, 6, 3), classes=5))
    return path


# --- splits ----------------------------------------------------------------------------------


def test_val_split_disjoint_and_seeded(npz_path, no_env):
    a = load_dataset("npz", npz_path, val_size=30, seed=1)
    b = load_dataset("npz", npz_path, val_size=30, seed=1)
    c = load_dataset("npz", npz_path, val_size=30, seed=2)
    assert len(a.train) == 70 and len(a.val) == 30 and len(a.test) == 20
    assert torch.equal(a.val.images, b.val.images) and torch.equal(a.train.images, b.train.images)
    assert not torch.equal(a.val.images, c.val.images)
    # disjoint and together the whole training file: identify images by their bytes
    full = load_dataset("npz", npz_path, val_size=0)
    key = {bytes(img.flatten().tolist()): i for i, img in enumerate(full.train.images)}
    train_ids = [key[bytes(img.flatten().tolist())] for img in a.train.images]
    val_ids = [key[bytes(img.flatten().tolist())] for img in a.val.images]
    assert not set(train_ids) & set(val_ids) and len(set(train_ids) | set(val_ids)) == 100
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)  # original order kept
    assert torch.equal(full.train.labels[train_ids], a.train.labels)


def test_subset_takes_first_remaining(npz_path, no_env):
    whole = load_dataset("npz", npz_path, val_size=30, seed=3)
    part = load_dataset("npz", npz_path, val_size=30, seed=3, subset=10)
    assert torch.equal(part.train.images, whole.train.images[:10])
    assert torch.equal(part.val.images, whole.val.images)
    assert len(part.test) == 20
    mean, std = channel_stats(part.train.images)
    assert part.mean == mean and part.std == std  # stats of the final training split
    ref = part.train.images.double() / 255
    assert np.allclose(mean, ref.mean(dim=(0, 2, 3))) and np.allclose(
        std, ref.std(dim=(0, 2, 3), correction=0)
    )


def test_split_argument_errors(npz_path, no_env):
    assert len(load_dataset("npz", npz_path, val_size=0).val) == 0
    with pytest.raises(DataError, match="val_size=100 must be smaller than the 100"):
        load_dataset("npz", npz_path, val_size=100)
    with pytest.raises(DataError, match="subset=80 exceeds the 70"):
        load_dataset("npz", npz_path, val_size=30, subset=80)
    with pytest.raises(DataError, match="subset must be at least 1"):
        load_dataset("npz", npz_path, subset=0)


def test_tensor_data():
    data = _data(10)
    part = data.take(torch.tensor([3, 1]))
    assert len(part) == 2 and part.labels.tolist() == [3, 1]
    assert torch.equal(part.images[0], data.images[3])
    assert data.to("cpu").images.data_ptr() == data.images.data_ptr()
    with pytest.raises(ValueError, match="uint8 or float"):
        TensorData(data.images.short(), data.labels)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        TensorData(data.images, data.labels[:9])


# --- ordering and iteration ------------------------------------------------------------------


def test_epoch_order_depends_only_on_seed_and_epoch():
    a = epoch_order(1000, seed=5, epoch=2)
    torch.manual_seed(123)  # the global RNG must not matter
    assert torch.equal(a, epoch_order(1000, seed=5, epoch=2))
    assert torch.equal(a.sort().values, torch.arange(1000))
    assert not torch.equal(a, epoch_order(1000, seed=5, epoch=3))
    assert not torch.equal(a, epoch_order(1000, seed=6, epoch=2))
    assert a.dtype == torch.int64


def test_iterate_batches_values_and_sizes():
    data = _data(50)
    batches = list(iterate_batches(data, 16))
    assert [len(y) for _, y in batches] == [16, 16, 16, 2] and num_batches(50, 16) == 4
    x, y = batches[1]
    # Exact: uint8 -> float is exact and IEEE division by 255 is correctly rounded on any CPU.
    assert x.dtype == torch.float32 and torch.equal(x, data.images[16:32].float() / 255)
    assert torch.equal(y, data.labels[16:32])
    assert len(list(iterate_batches(data, 16, drop_last=True))) == 3 == num_batches(50, 16, True)
    order = epoch_order(50, 0, 0)
    x, y = next(iterate_batches(data, 8, order=order))
    assert torch.equal(y, data.labels[order[:8]])
    with pytest.raises(ValueError, match="start_batch=5"):
        next(iterate_batches(data, 16, start_batch=5))
    with pytest.raises(ValueError, match="augmentation"):
        next(iterate_batches(data, 16, augment="mixup"))


def test_start_batch_resume_with_augmentation():
    """Resuming at batch k with the RNG state saved after k batches replays the same batches
    (exactly: crops and flips move pixels, they compute nothing)."""
    data = _data(50)
    order = epoch_order(50, seed=1, epoch=4)
    torch.manual_seed(0)
    full, state = [], None
    for i, batch in enumerate(iterate_batches(data, 8, order=order, augment="crop-flip")):
        full.append(batch)
        if i == 2:
            state = torch.get_rng_state()  # what a checkpoint after 3 batches holds
    torch.manual_seed(999)
    torch.set_rng_state(state)
    resumed = list(iterate_batches(data, 8, order=order, start_batch=3, augment="crop-flip"))
    assert len(resumed) == len(full) - 3
    for (xa, ya), (xb, yb) in zip(full[3:], resumed, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# --- augmentation ----------------------------------------------------------------------------


def test_crop_flip_is_a_padded_crop_or_its_mirror():
    x = _data(16, (3, 6, 5)).images.float() / 255
    torch.manual_seed(0)
    out = augment_batch(x, "crop-flip")
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    assert (out != x).flatten(1).any(dim=1).sum() >= 12  # most images actually change
    padded = F.pad(x, (4, 4, 4, 4))
    for i in range(len(x)):
        candidates = [
            view
            for top in range(9)
            for left in range(9)
            for view in (
                padded[i, :, top : top + 6, left : left + 5],
                padded[i, :, top : top + 6, left : left + 5].flip(-1),
            )
        ]
        assert any(torch.equal(out[i], c) for c in candidates)


def test_augment_none_and_unknown():
    x = torch.rand(2, 1, 4, 4)
    assert augment_batch(x, "none") is x
    with pytest.raises(ValueError, match="choose one of"):
        augment_batch(x, "cutout")
