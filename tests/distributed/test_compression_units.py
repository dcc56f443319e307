"""The int8 quantizer, its layouts and residuals, and the timing rule, in one process.

The hooks' own checks here run on a process group of one gloo worker (in this process): enough
to see what a worker encodes, which is what DDP's bucket layout must not change.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from advkit.distributed.compression import CompressionError, estimate_bytes
from advkit.distributed.compression.communication import Communication
from advkit.distributed.compression.int8 import (
    Int8Gather,
    Int8TwoSided,
    _Canonical,
    _Layout,
    _Residuals,
)
from advkit.distributed.compression.quantize import (
    LEVELS,
    dequantize,
    pack,
    padded_length,
    quantize,
    rounding_keys,
    rounding_noise,
    unpack,
)

BLOCK = 256


def uniform(values: torch.Tensor, seed: int = 0) -> torch.Tensor:
    return torch.rand(values.shape, generator=torch.Generator().manual_seed(seed))


def encoded(values: torch.Tensor, seed: int = 0, block: int = BLOCK):
    return quantize(values, block, uniform(values, seed))


def draw(values: torch.Tensor, seed: int = 0, block: int = BLOCK) -> torch.Tensor:
    return dequantize(*encoded(values, seed, block), block)


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
    codes, scales = encoded(values, seed=1)
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
    codes, scales = encoded(values)
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
    codes, scales = encoded(values)
    assert scales[1] == values[BLOCK:].abs().max()
    assert (codes[n:] == 0).all()
    with pytest.raises(RuntimeError):
        quantize(torch.ones(n), BLOCK, torch.rand(n))  # the caller pads first


@pytest.mark.parametrize("block", [BLOCK, 3])  # 3: the scales sit at odd byte offsets
def test_pack_and_unpack_are_inverse_for_several_rows(block):
    rows, per_row = 3, 4 * block
    values = torch.randn(rows * per_row)
    codes, scales = encoded(values, block=block)
    packed = pack(codes.view(rows, per_row), scales.view(rows, -1))
    assert packed.dtype == torch.uint8 and packed.shape == (rows, per_row + 4 * 4)
    got_codes, got_scales = unpack(packed, per_row)
    assert torch.equal(got_codes.reshape(-1), codes) and torch.equal(got_scales.reshape(-1), scales)


def test_rounding_draws_are_keyed_not_a_stream():
    """A segment's draws depend on its key alone: not on the segments drawn before it."""
    keys = rounding_keys(5, 0, 7, 0, [0, 1, 2])
    assert np.array_equal(keys, rounding_keys(5, 0, 7, 0, [0, 1, 2])) and len(set(keys)) == 3
    for other in (
        (6, 0, 7, 0),
        (5, 1, 7, 0),
        (5, 0, 8, 0),
        (5, 0, 7, 1),
    ):  # seed, rank, iter, stage
        assert not set(rounding_keys(*other, [0, 1, 2])) & set(keys), other
    cpu = torch.device("cpu")
    both = rounding_noise(keys[:2], [(0, 100), (100, 300)], 320, cpu)
    alone = rounding_noise(keys[1:2], [(0, 200)], 200, cpu)
    assert torch.equal(both[100:300], alone) and torch.equal(both[300:], torch.zeros(20))
    assert both.min() >= 0 and both.max() < 1 and not torch.equal(both[:100], both[100:200])


def test_rounding_noise_refuses_gaps_between_segments():
    with pytest.raises(ValueError, match="contiguous"):
        keys = rounding_keys(0, 0, 0, 0, [0, 1])
        rounding_noise(keys, [(0, 4), (8, 12)], 12, torch.device("cpu"))


class FakeBucket:
    """What the hooks read from a DDP GradBucket: its parameters' gradients, flat, in its order."""

    def __init__(
        self, index: int, params: list[nn.Parameter], last: bool = True,
        grads: list[torch.Tensor] | None = None,
    ) -> None:  # fmt: skip
        self._index, self._params, self._last = index, params, last
        flat = [g.reshape(-1) for g in grads] if grads is not None else []
        self._buffer = torch.cat(flat) if flat else torch.zeros(0)

    def index(self) -> int:
        return self._index

    def parameters(self) -> list[nn.Parameter]:
        return self._params

    def buffer(self) -> torch.Tensor:
        return self._buffer

    def is_last(self) -> bool:
        return self._last


@pytest.fixture
def one_worker():
    """A gloo process group of one worker, in this process."""
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield dist.group.WORLD
    dist.destroy_process_group()


#: parameters of 300, 40, 7 and 600 elements: none a whole number of blocks
SHAPES = ((30, 10), (40,), (7,), (20, 30))


def fixed_model() -> nn.Module:
    return nn.ParameterList([nn.Parameter(torch.zeros(s)) for s in SHAPES])


def grads_at(step: int, scale: float = 1.0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(s, generator=generator) * (i + 1) * scale for i, s in enumerate(SHAPES)]


def run_hook(hook, buckets: list[list[int]], grads: list[torch.Tensor]) -> list:
    """One iteration of ``hook`` over ``buckets`` (lists of parameter positions, in DDP's launch
    order): each parameter's decoded gradient in model order (None if in no bucket); the bytes
    each bucket sent in ``hook.sent``."""
    params = list(hook.model.parameters())
    decoded: dict[int, torch.Tensor] = {}
    hook.sent = []
    for index, positions in enumerate(buckets):
        bucket = FakeBucket(index, [params[p] for p in positions], index == len(buckets) - 1,
                            [grads[p] for p in positions])  # fmt: skip
        fut, sends = hook(bucket)
        hook.sent.append(sum(size for _, size in sends))
        flat = fut.wait()
        sizes = [grads[p].numel() for p in positions]
        decoded.update(zip(positions, flat.split(sizes), strict=True))
    return [decoded[p].view(SHAPES[p]) if p in decoded else None for p in range(len(SHAPES))]


def make_hook(kind: type, group, feedback: bool = False, seed: int = 3):
    model = fixed_model()
    hook = kind(model, group, block_size=BLOCK, seed=seed, rank=0, error_feedback=feedback)
    hook.model = model
    return hook


#: the same parameters in DDP-like layouts: model order, reversed, and rebuilt into two buckets
LAYOUTS = ([[0, 1, 2, 3]], [[3, 2, 1, 0]], [[2, 3], [1, 0]], [[3], [0, 2, 1]])


@pytest.mark.parametrize("feedback", [False, True])
def test_one_sided_int8_encodes_each_parameter_whatever_its_bucket(one_worker, feedback):
    """Three iterations in each layout: every parameter decodes to the same values, to the bit
    (the draws, the blocks and the residuals belong to the parameter, not to the bucket)."""
    results = []
    for layout in LAYOUTS:
        hook = make_hook(Int8Gather, one_worker, feedback)
        results.append([run_hook(hook, layout, grads_at(step)) for step in range(3)])
    for other in results[1:]:
        for got, want in zip(other, results[0], strict=True):
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    exact = grads_at(0)
    assert any(not torch.equal(a, b) for a, b in zip(results[0][0], exact, strict=True))


def test_two_sided_int8_encodes_a_bucket_whatever_its_order(one_worker):
    """The two-sided scheme's guarantee: the same parameter set in any order, the same values."""
    results = []
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        hook = make_hook(Int8TwoSided, one_worker, feedback=True)
        results.append([run_hook(hook, [order], grads_at(step)) for step in range(3)])
    for other in results[1:]:
        for got, want in zip(other, results[0], strict=True):
            assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))


def test_a_parameters_codes_do_not_depend_on_its_neighbours_magnitude(one_worker):
    """Parameter 2 (7 elements) shares a bucket with parameter 3: made 1000 times larger,
    parameter 3 changes nothing in parameter 2's scale (its own blocks)."""
    small, large = grads_at(0), grads_at(0)
    large[3] = large[3] * 1000
    quiet = run_hook(make_hook(Int8Gather, one_worker), [[2, 3]], small)
    loud = run_hook(make_hook(Int8Gather, one_worker), [[2, 3]], large)
    assert torch.equal(quiet[2], loud[2])
    step = small[2].abs().max() / LEVELS  # one level of parameter 2's own scale
    assert ((quiet[2] - small[2]).abs() <= step * (1 + 1e-6)).all()


@pytest.mark.parametrize("kind", [Int8Gather, Int8TwoSided])
def test_a_loaded_state_continues_the_draws_and_residuals_in_a_new_layout(one_worker, kind):
    """Saved after two iterations, loaded into a new hook whose bucket has another order (a
    resumed DDP starts from its first layout): the third iteration is the uninterrupted one."""
    straight = make_hook(kind, one_worker, feedback=True)
    for step in range(2):
        run_hook(straight, [[0, 1, 2, 3]], grads_at(step))
    state = straight.state_dict()
    want = run_hook(straight, [[0, 1, 2, 3]], grads_at(2))
    resumed = make_hook(kind, one_worker, feedback=True)
    resumed.load_state_dict(state)
    got = run_hook(resumed, [[3, 2, 1, 0]], grads_at(2))
    assert all(torch.equal(a, b) for a, b in zip(got, want, strict=True))
    fresh = run_hook(make_hook(kind, one_worker, feedback=True), [[0, 1, 2, 3]], grads_at(2))
    assert any(not torch.equal(a, b) for a, b in zip(fresh, want, strict=True))  # state matters


def test_a_state_from_the_bucket_order_quantizer_is_refused(one_worker):
    hook = make_hook(Int8Gather, one_worker, feedback=True)
    old = {"generator": torch.Generator().get_state(), "worker": {}, "owner": {}}
    with pytest.raises(CompressionError, match=r"older advkit.*start the run again"):
        hook.load_state_dict(old)


@pytest.mark.parametrize("compression", ["int8", "int8-2sided"])
def test_the_bytes_sent_follow_the_parameter_sizes(one_worker, compression):
    """Each parameter padded to whole blocks: 300, 40, 7, 600 take 2 + 1 + 1 + 3 blocks."""
    kind = Int8Gather if compression == "int8" else Int8TwoSided
    hook = make_hook(kind, one_worker)
    run_hook(hook, [[3, 2], [1, 0]], grads_at(0))
    sizes = [[600, 7], [40, 300]]
    assert hook.sent == [estimate_bytes(s, compression, 1, block_size=BLOCK)[0] for s in sizes]
    assert estimate_bytes([600, 7, 40, 300], "int8", 2, block_size=BLOCK) == (
        7 * BLOCK + 4 * 7, 7 * BLOCK + 4 * 7,
    )  # fmt: skip
    assert estimate_bytes(947, "int8", 2) == estimate_bytes([947], "int8", 2)  # one tensor
    assert estimate_bytes([600, 7], "none", 2) == estimate_bytes(607, "none", 2)


def test_a_layout_maps_the_bucket_buffer_to_the_canonical_vector_and_back():
    """Reverse bucket order: each parameter lands at its model-order segment, padded."""
    model = fixed_model()
    canonical = _Canonical(model, BLOCK)
    assert canonical.padded == [512, 256, 256, 768] and canonical.length == 1792
    layout = _Layout(canonical, (3, 1), torch.device("cpu"))
    assert layout.positions == (1, 3) and layout.segments == [(0, 256), (256, 1024)]
    buffer = torch.cat([torch.full((600,), 3.0), torch.full((40,), 1.0)])
    values = layout.read(buffer, 1100)
    assert values.shape == (1100,) and values[:40].eq(1).all() and values[40:256].eq(0).all()
    assert values[256:856].eq(3).all() and values[856:].eq(0).all()
    back = layout.write(values * 2, torch.empty(640))
    torch.testing.assert_close(back, buffer * 2)
    identity = _Layout(canonical, (0,), torch.device("cpu"))
    assert identity.slot is not None  # 300 elements need padding: a scatter, even in order


def test_residuals_follow_their_parameters_when_buckets_are_rebuilt():
    """A residual lives in the model-wide vector: a new bucket reads each parameter's own."""
    model = fixed_model()
    canonical = _Canonical(model, BLOCK)
    cpu = torch.device("cpu")
    residuals = _Residuals(canonical.length)
    first = _Layout(canonical, (3, 2, 1, 0), cpu)
    residuals.put(first, torch.arange(float(first.length)))
    for order in ((1, 0), (3, 2), (3, 1)):  # (3, 1): not neighbours, an index
        layout = _Layout(canonical, order, cpu)
        got = residuals.take(layout, cpu)
        want = torch.cat([torch.arange(float(a), float(b)) for a, b in
                          (first.segments[p] for p in layout.positions)])  # fmt: skip
        torch.testing.assert_close(got, want)
    assert isinstance(_Layout(canonical, (3, 1), cpu).model_slots, torch.Tensor)
    residuals.put(_Layout(canonical, (3, 1), cpu), torch.zeros(256 + 768))
    assert (
        residuals.values[512:768].eq(0).all()
        and residuals.values[256:512].eq(torch.arange(256.0, 512.0)).all()
    )


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
