"""Float images in [0, 1]: accepted by TensorData and .npz files, refused outside [0, 1]."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from advkit.data import DataError, TensorData, channel_stats, iterate_batches, load_dataset
from advkit.training.data_checks import fingerprint


def _uint8(n: int = 20, shape: tuple[int, ...] = (3, 6, 6)) -> TensorData:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *shape), generator=gen, dtype=torch.uint8)
    return TensorData(images, torch.arange(n) % 10)


def test_float_images_give_the_same_batches_as_their_uint8_source():
    data = _uint8()
    as_float = TensorData(data.images.double() / 255, data.labels)  # float64 kept as float32
    assert as_float.images.dtype == torch.float32
    order = torch.randperm(len(data))
    for (x8, y8), (xf, yf) in zip(
        iterate_batches(data, 7, order=order),
        iterate_batches(as_float, 7, order=order),
        strict=True,
    ):
        torch.testing.assert_close(x8, xf, rtol=0, atol=1e-7)
        assert torch.equal(y8, yf)
    batch = as_float.inputs(torch.tensor([0, 1]))
    batch.zero_()  # a batch is a copy: the dataset is untouched
    assert as_float.images[:2].abs().sum() > 0


def test_channel_stats_of_float_images_match_uint8():
    data = _uint8()
    mean8, std8 = channel_stats(data.images)
    meanf, stdf = channel_stats(data.images.float() / 255)
    np.testing.assert_allclose(mean8, meanf, rtol=1e-6)
    np.testing.assert_allclose(std8, stdf, rtol=1e-5)


@pytest.mark.parametrize(
    ("scale", "offset", "hint"),
    [
        (255.0, 0.0, "divide them by 255"),
        (1.0, -0.5, "normalized already"),
        (float("nan"), 0, "NaN"),
    ],
)
def test_float_images_outside_unit_range_are_refused_with_a_fix(scale, offset, hint):
    data = _uint8()
    images = data.images.float() / 255 * scale + offset
    with pytest.raises(DataError, match=hint):
        TensorData(images, data.labels)


def test_fingerprint_tells_float_data_apart_exactly():
    data = _uint8()
    images = data.images.float() / 255
    splits = _splits(TensorData(images, data.labels))
    nudged = images.clone()
    nudged[3, 0, 0, 0] = torch.nextafter(nudged[3, 0, 0, 0], torch.tensor(2.0))
    assert fingerprint(splits) == fingerprint(_splits(TensorData(images.clone(), data.labels)))
    assert fingerprint(splits) != fingerprint(_splits(TensorData(nudged, data.labels)))


def _splits(train: TensorData):
    from advkit.data import DataSplits

    return DataSplits(train, train, train, 10, (0.5,) * 3, (0.5,) * 3, "none", "t", None)


def test_npz_with_float_images_loads_like_its_uint8_twin(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 40)
    np.savez(tmp_path / "u8.npz", x_train=x, y_train=y, x_test=x[:8], y_test=y[:8])
    np.savez(
        tmp_path / "f32.npz",
        x_train=(x / 255).astype(np.float32),
        y_train=y,
        x_test=(x[:8] / 255).astype(np.float32),
        y_test=y[:8],
    )
    a = load_dataset("npz", tmp_path / "u8.npz", val_size=5)
    b = load_dataset("npz", tmp_path / "f32.npz", val_size=5)
    assert b.train.images.dtype == torch.float32
    torch.testing.assert_close(a.train.inputs(slice(None)), b.train.inputs(slice(None)))
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5)


def test_npz_with_0_255_floats_says_to_divide(tmp_path):
    x = np.full((4, 8, 8), 200.0, dtype=np.float32)
    y = np.zeros(4, dtype=np.int64)
    np.savez(tmp_path / "bad.npz", x_train=x, y_train=y, x_test=x, y_test=y)
    with pytest.raises(DataError, match="divide by 255"):
        load_dataset("npz", tmp_path / "bad.npz", val_size=1)
