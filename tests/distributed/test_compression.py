"""Gradient-compression hooks on two gloo workers: exactness, rounding, counters, resume.

One spawn runs every distributed check of this module (each spawn costs seconds). A ``Fixed``
model makes the gradient known: its parameters' gradients are the tensors passed to forward,
so each rank's exact gradient, the exact average, and each block's absmax are computed here by
the test, independently of the hooks. Settings errors need no workers and run in this process.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from advkit.distributed import World
from advkit.distributed.compression import (
    COMPRESSIONS,
    CompressionError,
    attach_communication,
    estimate_bytes,
)
from advkit.errors import UserError
from tests.distributed.spawn import run_workers

BLOCK = 256
SHAPE = (37, 11)  # 407 elements: two int8 blocks, the second padded
DRAWS = 200  # iterations of one fixed gradient (unbiasedness)
EF_STEPS = 50
#: (name, compression, error feedback)
VARIANTS = [(c, c, False) for c in COMPRESSIONS if c != "powersgd"] + [
    ("int8+ef", "int8", True), ("int8-2sided+ef", "int8-2sided", True),
]  # fmt: skip
TRAINED = [*VARIANTS, ("powersgd", "powersgd", False)]
#: PowerSGD's model: a matrix worth compressing, a vector and a small matrix that are not.
POWERSGD_SHAPES = ((37, 11), (37,), (5, 3))
POWERSGD_RANK = 2


class Fixed(nn.Module):
    """Parameters whose gradients are exactly the tensors passed to forward."""

    def __init__(self, *shapes: tuple[int, ...]) -> None:
        super().__init__()
        self.params = nn.ParameterList([nn.Parameter(torch.zeros(s)) for s in shapes])

    def forward(self, *targets: torch.Tensor) -> torch.Tensor:
        return sum((p * t).sum() for p, t in zip(self.params, targets, strict=True))


def gradient(rank: int, shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    """Rank ``rank``'s fixed gradient (a different scale per rank)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(10 + rank)) * (1 + rank)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 20), nn.ReLU(), nn.Linear(20, 5))


def step(ddp: nn.Module, *targets: torch.Tensor) -> list[torch.Tensor]:
    """One backward of the fixed model through DDP: the synchronized gradients."""
    for p in ddp.parameters():
        p.grad = None
    ddp(*targets).backward()
    return [p.grad.clone() for p in ddp.parameters()]


def saved_and_loaded(state: dict[str, Any]) -> dict[str, Any]:
    """A state through torch.save / torch.load(weights_only=True), as a checkpoint takes it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def workers_checks(world: World) -> dict[str, Any]:
    rank, out = world.rank, {}
    own = gradient(rank)
    # none == DDP without a hook, bitwise, on one bucket and on several, over the bucket rebuild.
    data = torch.randn(3, 8, 12, generator=torch.Generator().manual_seed(rank))
    equal = []
    for cap in (25.0, 0.0002):
        plain = DistributedDataParallel(mlp(), bucket_cap_mb=cap)
        hooked = DistributedDataParallel(mlp(), bucket_cap_mb=cap)
        attach_communication(hooked, "none")
        for x in data:
            grads = []
            for ddp in (plain, hooked):
                ddp.zero_grad()
                ddp(x).pow(2).sum().backward()
                grads.append([p.grad.clone() for p in ddp.parameters()])
            equal.append(all(torch.equal(a, b) for a, b in zip(*grads, strict=True)))
    out["none_equal"] = equal
    out["buckets"] = hooked._get_ddp_logging_data().get("rebuilt_bucket_sizes")
    # Every hook on the fixed gradient: decoded averages and counters.
    for name, compression, feedback in VARIANTS:
        ddp = DistributedDataParallel(Fixed(SHAPE))
        comm = attach_communication(ddp, compression, error_feedback=feedback, seed=1, rank=rank)
        draws = EF_STEPS if feedback else (DRAWS if "int8" in name else 2)
        decoded = torch.stack([step(ddp, own)[0] for _ in range(draws)])
        out[name] = {
            "decoded": decoded, "take": comm.take(), "again": comm.take(),
            "per_iter": (comm.bytes_per_iter, comm.wire_bytes_per_iter),
        }  # fmt: skip
    # Resume: the next draw repeats after load_state_dict, in place and in a fresh DDP.
    for compression in ("int8", "int8-2sided"):
        ddp = DistributedDataParallel(Fixed(SHAPE))
        comm = attach_communication(ddp, compression, error_feedback=True, seed=2, rank=rank)
        for _ in range(3):
            step(ddp, own)
        state = saved_and_loaded(comm.state_dict())
        first = step(ddp, own)[0]
        comm.load_state_dict(state)
        again = step(ddp, own)[0]
        fresh = DistributedDataParallel(Fixed(SHAPE))
        resumed = attach_communication(fresh, compression, error_feedback=True, seed=2, rank=rank)
        resumed.load_state_dict(saved_and_loaded(state))
        out[f"resume-{compression}"] = (first, again, step(fresh, own)[0])
    # PowerSGD: bytes per iteration (plain all-reduce first), resume.
    targets = [gradient(rank, s) for s in POWERSGD_SHAPES]
    ddp = DistributedDataParallel(Fixed(*POWERSGD_SHAPES))
    comm = attach_communication(ddp, "powersgd", powersgd_rank=POWERSGD_RANK, seed=3, rank=rank)
    per_iter, grads = [], []
    for _ in range(4):
        grads.append(step(ddp, *targets))
        per_iter.append((comm.bytes_per_iter, comm.wire_bytes_per_iter))
    state = saved_and_loaded(comm.state_dict())
    first = step(ddp, *targets)
    comm.load_state_dict(state)
    again = step(ddp, *targets)
    out["powersgd"] = {"per_iter": per_iter, "grads": grads, "resume": (first, again)}
    # Training: a few SGD steps with every compression, one bucket and several.
    x = torch.randn(4, 8, 12, generator=torch.Generator().manual_seed(100 + rank))
    y = torch.randint(0, 5, (4, 8), generator=torch.Generator().manual_seed(200 + rank))
    for name, compression, feedback in TRAINED:
        for cap in (25.0, 0.0002):
            ddp = DistributedDataParallel(mlp(), bucket_cap_mb=cap)
            comm = attach_communication(ddp, compression, error_feedback=feedback, rank=rank)
            optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
            for inputs, labels in zip(x, y, strict=True):
                optimizer.zero_grad()
                nn.functional.cross_entropy(ddp(inputs), labels).backward()
                optimizer.step()
            out[f"trained-{name}-{cap}"] = {
                "weights": copy.deepcopy(ddp.module.state_dict()), "take": comm.take(),
            }  # fmt: skip
    return out


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict[str, Any]]:
    return run_workers(workers_checks, tmp_path_factory.mktemp("compression"))


def exact_average(shape: tuple[int, ...] = SHAPE) -> torch.Tensor:
    return (gradient(0, shape).double() + gradient(1, shape).double()) / 2


def block_absmax(values: torch.Tensor) -> torch.Tensor:
    """Each element's block absmax, in the flat layout the hook quantizes (one parameter)."""
    flat = values.reshape(-1)
    padded = torch.zeros(-(-flat.numel() // BLOCK) * BLOCK, dtype=flat.dtype)
    padded[: flat.numel()] = flat
    absmax = padded.view(-1, BLOCK).abs().amax(1, keepdim=True).expand(-1, BLOCK)
    return absmax.reshape(-1)[: flat.numel()].view(values.shape)


def test_none_is_ddp_without_a_hook_to_the_bit(ranks):
    for rank in ranks:
        assert rank["none_equal"] == [True] * 6
    assert "," in ranks[0]["buckets"]  # the second model really has several buckets


def test_fp16_and_bf16_are_within_their_rounding_of_the_exact_average(ranks):
    exact = exact_average()
    magnitude = (gradient(0).abs() + gradient(1).abs()).double() / 2
    errors = {}
    for name, rtol in (("fp16", 1.5e-3), ("bf16", 1.2e-2)):
        decoded = ranks[0][name]["decoded"].double()
        error = (decoded - exact).abs()
        assert (error <= rtol * magnitude + 1e-7).all(), name
        errors[name] = error.max().item()
    assert 0 < errors["fp16"] < errors["bf16"]  # each really rounded, bf16 coarser


@pytest.mark.parametrize("name", ["int8", "int8-2sided"])
def test_int8_is_unbiased(ranks, name):
    """The mean over many draws converges to the exact average like 1/sqrt(draws); a biased
    decoder (DAT's uint8 true division) would keep its error as the draws grow."""
    errors = ranks[0][name]["decoded"].double() - exact_average()
    one = errors.norm(dim=(1, 2)).mean()
    for draws in (50, DRAWS):
        mean_error = errors[:draws].mean(0).norm()
        assert mean_error < 2 * one / draws**0.5, (draws, mean_error, one)
    assert one > 0


@pytest.mark.parametrize(("name", "stages"), [("int8", 1), ("int8-2sided", 2)])
def test_int8_error_per_step_is_within_one_level(ranks, name, stages):
    """Each worker's decoded value is within its block's absmax/127 of its gradient; the
    two-sided scheme rounds the average once more, within the same bound."""
    bound = (block_absmax(gradient(0)) + block_absmax(gradient(1))).double() / 2 / 127
    errors = (ranks[0][name]["decoded"].double() - exact_average()).abs()
    assert (errors <= stages * bound * (1 + 1e-5)).all()
    assert (errors > 0.1 * bound).any()  # the bound is not vacuous


@pytest.mark.parametrize("name", ["int8", "int8-2sided"])
def test_error_feedback_keeps_the_sum_of_applied_gradients_on_the_true_sum(ranks, name):
    exact = exact_average()
    bound = (block_absmax(gradient(0)) + block_absmax(gradient(1))).double() / 2 / 127
    with_feedback = ranks[0][f"{name}+ef"]["decoded"].double().sum(0) - EF_STEPS * exact
    without = ranks[0][name]["decoded"][:EF_STEPS].double().sum(0) - EF_STEPS * exact
    # with feedback the gap is what is left to send (bounded); without, a random walk
    assert (with_feedback.abs() <= 3 * bound).all()
    assert with_feedback.norm() < 0.5 * without.norm()


def test_ranks_decode_the_same_average(ranks):
    for name, _, _ in VARIANTS:
        assert torch.equal(ranks[0][name]["decoded"], ranks[1][name]["decoded"]), name


def test_byte_counters_follow_the_analytic_formulas(ranks):
    """Counted by hand for 407 fp32 gradients on 2 workers, block 256."""
    n, w = 407, 2
    int8_row = 512 + 4 * 2  # two blocks of codes, padded, and their fp32 scales
    chunk_row = 256 + 4  # each worker's chunk: 204 elements padded to one block
    expected = {  # (payload, wire)
        "none": (4 * n, 2 * (w - 1) / w * 4 * n),
        "fp16": (2 * n, 2 * (w - 1) / w * 2 * n),
        "bf16": (2 * n, 2 * (w - 1) / w * 2 * n),
        "int8": (int8_row, (w - 1) * int8_row),
        "int8-2sided": (w * chunk_row + chunk_row, (w - 1) / w * w * chunk_row + chunk_row),
    }
    assert expected["int8"][1] / expected["none"][1] == pytest.approx(
        0.25 * 512 / n * 1.016, rel=0.01
    )
    for name, compression, _ in VARIANTS:
        payload, wire = expected[compression]
        assert estimate_bytes(n, compression, w, block_size=BLOCK) == pytest.approx((payload, wire))
        for rank in ranks:
            result = rank[name]
            iterations = len(result["decoded"])
            assert result["per_iter"] == pytest.approx((payload, wire)), name
            take = result["take"]
            assert take["comm_iterations"] == iterations
            assert take["comm_bytes"] == pytest.approx(iterations * payload)
            assert take["comm_wire_bytes"] == pytest.approx(iterations * wire)
            assert 0 < take["comm_seconds"] < 60
            assert result["again"] == dict.fromkeys(take, 0) | {"comm_iterations": 0}


def test_powersgd_counts_what_it_sends(ranks):
    """Two plain all-reduces of all 459 elements; then, at rank 2, P (37x2) and Q (11x2) of
    the 37x11 matrix and, uncompressed, the vector (37) and the 5x3 matrix (16 * 2 >= 15)."""
    plain, compressed = 4 * (407 + 37 + 15), 4 * (37 * 2 + 11 * 2 + 37 + 15)
    for rank in ranks:
        per_iter = [payload for payload, _ in rank["powersgd"]["per_iter"]]
        assert per_iter == [plain, plain, compressed, compressed]
        assert [wire for _, wire in rank["powersgd"]["per_iter"]] == per_iter  # W=2: 2(W-1)/W=1
    exact = [exact_average(s) for s in POWERSGD_SHAPES]
    for grads in ranks[0]["powersgd"]["grads"][:2]:
        for got, want in zip(grads, exact, strict=True):
            torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    for a, b in zip(*(r["powersgd"]["grads"][-1] for r in ranks), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["int8", "int8-2sided", "powersgd"])
def test_state_dict_round_trip_repeats_the_next_draw(ranks, kind):
    for rank in ranks:
        if kind == "powersgd":
            first, again = rank["powersgd"]["resume"]
            assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
            continue
        first, again, fresh = rank[f"resume-{kind}"]
        assert torch.equal(first, again)
        assert torch.equal(first, fresh)  # a new process's DDP and hook, the state loaded


@pytest.mark.parametrize(("name", "cap"), [(n, c) for n, _, _ in TRAINED for c in (25.0, 0.0002)])
def test_training_keeps_the_ranks_weights_identical(ranks, name, cap):
    rank0, rank1 = (r[f"trained-{name}-{cap}"] for r in ranks)
    for key, value in rank0["weights"].items():
        assert torch.equal(value, rank1["weights"][key]), key
    assert rank0["take"]["comm_iterations"] == 4
    start = mlp().state_dict()
    assert any(not torch.equal(start[k], v) for k, v in rank0["weights"].items())


@pytest.mark.parametrize("name", ["int8", "int8+ef"])
def test_one_sided_int8_trains_the_same_weights_in_one_bucket_or_several(ranks, name):
    """Each parameter is rounded on its own (its blocks, its keyed draws, its residual), so the
    bucket layout, DDP's rebuild included, changes nothing, to the bit."""
    for rank in ranks:
        one, several = (rank[f"trained-{name}-{cap}"]["weights"] for cap in (25.0, 0.0002))
        for key, value in one.items():
            assert torch.equal(value, several[key]), key


# ---------------------------------------------------------------------- settings (no workers)
def test_a_compression_on_one_process_is_refused_with_what_to_change():
    with pytest.raises(CompressionError, match=r"--grad-compression int8 .*--nproc 2"):
        attach_communication(mlp(), "int8")
    assert issubclass(CompressionError, UserError)


def test_one_process_measures_nothing():
    comm = attach_communication(mlp(), "none")
    assert comm.take() == {
        "comm_iterations": 0, "comm_bytes": 0.0, "comm_wire_bytes": 0.0, "comm_seconds": 0.0,
    }  # fmt: skip
    assert comm.bytes_per_iter == comm.wire_bytes_per_iter == 0
    comm.load_state_dict(saved_and_loaded(comm.state_dict()))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression": "int4"}, r"one of none, fp16, bf16, int8, int8-2sided, powersgd.*int4"),
        ({"compression": "fp16", "error_feedback": True}, r"--error-feedback .*int8"),
        ({"compression": "powersgd", "error_feedback": True}, r"its own"),
        ({"compression": "powersgd", "powersgd_rank": 0}, r"--powersgd-rank .*>= 1"),
        ({"compression": "int8", "block_size": 0}, r"block size"),
    ],
)
def test_bad_settings_are_refused_before_anything_runs(options, message):
    with pytest.raises(CompressionError, match=message):
        attach_communication(mlp(), **options)
