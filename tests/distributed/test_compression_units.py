"""The int8 quantizer, the residual bookkeeping and the timing rule, in one process."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import nn

from advkit.distributed.compression import CompressionError, estimate_bytes
from advkit.distributed.compression.communication import Communication
from advkit.distributed.compression.int8 import _Residuals
from advkit.distributed.compression.quantize import (
    LEVELS,
    dequantize,
    make_generator,
    pack,
    padded_length,
    quantize,
    unpack,
)

BLOCK = 256


def draw(values: torch.Tensor, seed: int = 0, block: int = BLOCK) -> torch.Tensor:
    codes, scales = quantize(values, block, make_generator(seed, 0))
    return dequantize(codes, scales, block)


def test_stochastic_rounding_is_unbiased():
    """4000 independent roundings of one block: their mean is the block, within 4 sigma."""
    block = torch.randn(BLOCK, generator=torch.Generator().manual_seed(0))
    copies = 4000
    decoded = draw(block.repeat(copies)).view(copies, BLOCK).double()
    step = block.abs().max().double() / LEVELS
    sigma = step / 2  # the largest standard deviation of a rounding between two levels
    assert ((decoded.mean(0) - block.double()).abs() <= 4 * sigma / copies**0.5).all()
    assert decoded.std(0).max() > 0.2 * step  # really random, not nearest rounding


def test_each_value_is_within_one_level_and_codes_stay_in_range():
    values = torch.cat([torch.randn(3 * BLOCK) * 5, torch.tensor([7.0, -7.0] * (BLOCK // 2))])
    codes, scales = quantize(values, BLOCK, make_generator(1, 0))
    assert codes.dtype == torch.int8 and scales.dtype == torch.float32
    assert codes.min() >= -LEVELS and codes.max() <= LEVELS
    assert torch.equal(scales, values.view(-1, BLOCK).abs().amax(1))
    error = (dequantize(codes, scales, BLOCK) - values).view(-1, BLOCK).abs()
    assert (error <= scales[:, None] / LEVELS * (1 + 1e-6)).all()
    assert torch.equal(
        codes[-BLOCK:], torch.tensor([LEVELS, -LEVELS] * (BLOCK // 2)).to(torch.int8)
    )


def test_a_zero_block_sends_zeros_and_an_all_equal_block_is_exact():
    values = torch.cat([torch.zeros(BLOCK), torch.full((BLOCK,), -0.3)])
    codes, scales = quantize(values, BLOCK, make_generator(0, 0))
    assert scales.tolist() == pytest.approx([0.0, 0.3])
    assert (codes[:BLOCK] == 0).all() and (codes[BLOCK:] == -LEVELS).all()
    decoded = dequantize(codes, scales, BLOCK)
    assert torch.isfinite(decoded).all()
    torch.testing.assert_close(decoded, values, rtol=1e-6, atol=0)


def test_padding_fills_the_last_block_without_changing_its_scale():
    n = 407
    assert padded_length(n, BLOCK) == 512 and padded_length(512, BLOCK) == 512
    values = torch.zeros(padded_length(n, BLOCK))
    values[:n] = torch.linspace(-1, 2, n)
    codes, scales = quantize(values, BLOCK, make_generator(0, 0))
    assert scales[1] == values[BLOCK:].abs().max()
    assert (codes[n:] == 0).all()
    with pytest.raises(RuntimeError):
        quantize(torch.ones(n), BLOCK, make_generator(0, 0))  # the caller pads first


@pytest.mark.parametrize("block", [BLOCK, 3])  # 3: the scales sit at odd byte offsets
def test_pack_and_unpack_are_inverse_for_several_rows(block):
    rows, per_row = 3, 4 * block
    values = torch.randn(rows * per_row)
    codes, scales = quantize(values, block, make_generator(0, 0))
    packed = pack(codes.view(rows, per_row), scales.view(rows, -1))
    assert packed.dtype == torch.uint8 and packed.shape == (rows, per_row + 4 * 4)
    got_codes, got_scales = unpack(packed, per_row)
    assert torch.equal(got_codes.reshape(-1), codes) and torch.equal(got_scales.reshape(-1), scales)


def test_each_rank_rounds_with_its_own_reproducible_stream():
    values = torch.randn(BLOCK)
    assert torch.equal(draw(values, seed=5), draw(values, seed=5))
    first, second = (
        quantize(values, BLOCK, make_generator(5, 0)),
        quantize(values, BLOCK, make_generator(5, 1)),
    )
    assert not torch.equal(first[0], second[0])


class FakeBucket:
    """What the hooks read from a DDP GradBucket."""

    def __init__(self, index: int, params: list[nn.Parameter], last: bool = True) -> None:
        self._index, self._params, self._last = index, params, last

    def index(self) -> int:
        return self._index

    def parameters(self) -> list[nn.Parameter]:
        return self._params

    def is_last(self) -> bool:
        return self._last


def test_residuals_follow_their_parameters_when_buckets_are_rebuilt():
    """DDP's first buckets differ from the rebuilt ones: each parameter keeps its residual."""
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 4))  # parameters of 6, 2, 8, 4
    params = list(model.parameters())
    residuals = _Residuals(model)
    first = FakeBucket(0, params[::-1])  # one bucket, reverse order: 4, 8, 2, 6
    layout = residuals.layout(first)
    assert layout == (3, 2, 1, 0)
    residuals.stored[0] = (layout, torch.arange(20.0))
    # rebuilt: bucket 0 holds the last layer in forward order, bucket 1 the first layer
    rebuilt = [FakeBucket(0, params[2:]), FakeBucket(1, params[:2])]
    got = [
        residuals.get(b.index(), residuals.layout(b), 12 if b.index() == 0 else 8) for b in rebuilt
    ]
    torch.testing.assert_close(got[0], torch.cat([torch.arange(4.0, 12.0), torch.arange(0.0, 4.0)]))
    torch.testing.assert_close(
        got[1], torch.cat([torch.arange(14.0, 20.0), torch.arange(12.0, 14.0)])
    )
    assert residuals.get(0, (0, 1), 5) is None  # a size that does not match: start from zero


def test_an_iteration_lasts_from_the_first_bucket_to_the_last_completion_not_the_sum():
    """Two buckets in flight together for ~0.1 s: the span is ~0.1 s (their sum would be 0.2)."""
    futures = [torch.futures.Future(), torch.futures.Future()]

    def hook(bucket):
        return futures[bucket.index()], [("all_reduce", 100)]

    comm = Communication("none", hook, world_size=4)
    results = [comm._run(FakeBucket(0, [], last=False)), comm._run(FakeBucket(1, [], last=True))]

    def finish() -> None:
        time.sleep(0.1)
        for fut in futures:
            fut.set_result(torch.zeros(1))

    thread = threading.Thread(target=finish)
    thread.start()
    for result in results:
        result.wait()
    thread.join()
    taken = comm.take()
    assert taken["comm_iterations"] == 1 and taken["comm_bytes"] == 200
    assert taken["comm_wire_bytes"] == pytest.approx(200 * 2 * 3 / 4)
    assert 0.09 < taken["comm_seconds"] < 0.19
    assert comm.bytes_per_iter == 200


def test_two_sided_int8_sends_a_quarter_of_fp32_at_any_worker_count():
    n = 25_557_032  # ResNet-50
    for workers in (2, 4, 8, 16):
        fp32 = estimate_bytes(n, "none", workers)[1]
        assert estimate_bytes(n, "fp16", workers)[1] / fp32 == pytest.approx(0.5)
        assert estimate_bytes(n, "int8-2sided", workers)[1] / fp32 == pytest.approx(0.25, rel=0.02)
        one_sided = estimate_bytes(n, "int8", workers)[1] / fp32
        assert one_sided == pytest.approx((workers - 1) / (8 * (workers - 1) / workers), rel=0.02)


def test_a_state_of_another_compression_is_refused():
    state = Communication("int8").state_dict()
    with pytest.raises(CompressionError, match="written with --grad-compression int8"):
        Communication("none").load_state_dict(state)
