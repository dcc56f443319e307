"""N workers train the model one process trains: every method, random starts and augmentation on.

One spawn of two gloo workers runs all the checks of this module (each spawn costs seconds):
the weights after a short run equal a single process's up to summation order, the two ranks
hold bitwise-identical weights, sharded validation and train metrics are the single process's,
and a run stopped on one rank and resumed on two ends with the uninterrupted weights.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
import torch

import advkit
from advkit.config import TrainConfig
from advkit.data import load_dataset
from advkit.distributed import World
from advkit.models import create_model
from advkit.training import Trainer, TrainingInterrupted
from tests.conftest import FASHION_DIR
from tests.distributed.spawn import run_workers

pytestmark = pytest.mark.skipif(
    not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists(), reason="Fashion-MNIST missing"
)

#: case -> extra config (the case names the method unless it says "method"); every one draws
#: random starts or noise where the method has any. The dat cases add DAT's clean term (two
#: forwards through the wrapper, one backward) and the layer-wise adaptive optimizer.
METHODS: dict[str, dict[str, Any]] = {
    "natural": {},
    "pgd": {"steps": 2},
    "free": {"replays": 2},
    "fast": {"init": "random", "co_guard": "warn", "co_check_every": 2},  # guard measured too
    "gradalign": {"grad_align_lambda": 0.5},
    "trades": {"steps": 2},
    # IBP's bounds run on the unwrapped model, its clean pass through the wrapper: one backward.
    "ibp": {"eps_hold_epochs": 0.2, "eps_warmup_epochs": 0.4},
    "pgd-dat": {"method": "pgd", "steps": 2, "clean_weight": 1.0, "optimizer": "lalr", "lr": 0.01},
    "fast-dat": {
        "method": "fast",
        "clean_weight": 0.5,
        "optimizer": "lalr",
        "lalr_base": "sgd",
        "lalr_exclude_1d": True,
        "lr": 0.01,
    },
    # Randomized smoothing: the noise copies are keyed per sample like every other draw.
    "gaussian": {"sigma": 0.25},
    "smoothadv": {"norm": "l2", "eps": 0.5, "steps": 2, "num_noise": 2, "noise_clip": True},
    "consistency": {"num_noise": 2, "optimizer": "lalr", "lr": 0.01},  # with LALR
    "macer": {"num_noise": 4, "macer_beta": 1.0},  # beta 1: the hinge counts samples early on
}


def small_data():
    return load_dataset("fashion-mnist", val_size=64, subset=320, seed=0)


def config(method: str, **extra: Any) -> TrainConfig:
    base = dict(
        method=method, model="cnn-small", epochs=1, batch_size=64, lr=0.05, augment="crop-flip",
        val_examples=64, val_steps=2, quiet=True, seed=3,
    )  # fmt: skip
    return TrainConfig(**(base | METHODS.get(method, {}) | extra))


def train_all(world: World, run_root: str) -> dict[str, Any]:
    """Every check's training on this worker (run by each of the spawned workers and, with the
    single-process world, by the test itself)."""
    data = small_data()
    results: dict[str, Any] = {}
    for method in METHODS:
        trainer = Trainer(config(method), data=data, world=world)
        initial = copy.deepcopy(trainer.model.state_dict())
        result = trainer.fit()
        results[method] = {
            "initial": initial, "weights": trainer.model.state_dict(), "history": result.history,
        }  # fmt: skip
    # Stop on one rank only after step 3 of 8 (2 epochs of 4), checkpoint, resume: exact.
    run_dir = Path(run_root) / f"free-run-{world.size}"
    stopper = Trainer(
        config("free", epochs=2), run_dir, data=data, world=world,
        on_step=lambda t, step: t.request_stop() if step == 3 and world.rank == 0 else None,
    )  # fmt: skip
    try:
        stopper.fit()
        results["stopped"] = False
    except TrainingInterrupted:
        results["stopped"] = True
    resumed = Trainer(config("free", epochs=2), run_dir, data=data, world=world)
    resumed.resume()
    resumed.fit()
    results["resumed"] = resumed.model.state_dict()
    straight = Trainer(config("free", epochs=2), data=data, world=world)
    straight.fit()
    results["straight"] = straight.model.state_dict()
    # SmoothAdv, stopped on one rank after step 3 and resumed: its noise and attack come back.
    smooth = dict(epochs=2, **METHODS["smoothadv"])
    stopper = Trainer(
        config("smoothadv", **smooth), Path(run_root) / f"smoothadv-run-{world.size}", data=data,
        world=world, on_step=lambda t, step: t.request_stop() if step == 3 and world.rank == 0
        else None,
    )  # fmt: skip
    with contextlib.suppress(TrainingInterrupted):
        stopper.fit()
    resumed = Trainer(config("smoothadv", **smooth), Path(run_root) / f"smoothadv-run-{world.size}",
                      data=data, world=world)  # fmt: skip
    resumed.resume()
    resumed.fit()
    straight = Trainer(config("smoothadv", **smooth), data=data, world=world)
    straight.fit()
    results["smooth_resumed"], results["smooth_straight"] = (
        resumed.model.state_dict(), straight.model.state_dict(),
    )  # fmt: skip
    # A checkpoint left at step 3 for the test to resume on another number of workers.
    left = Trainer(
        config("free", epochs=2), Path(run_root) / f"free-left-{world.size}", data=data,
        world=world, on_step=lambda t, step: t.request_stop() if step == 3 else None,
    )  # fmt: skip
    with contextlib.suppress(TrainingInterrupted):
        left.fit()
    # advkit.train inside a process group its caller started (here: the spawn harness's).
    results["library"] = advkit.train(config("pgd"), data=data).model.state_dict()
    # BatchNorm: per-shard statistics while training, averaged over the workers when measured.
    bn = Trainer(config("pgd", model="cnn-bn"), data=data, world=world)
    bn.fit()
    results["bn_buffers"] = {k: v for k, v in bn.model.state_dict().items() if "running" in k}
    if world.size > 1:
        results["compressed"] = compressed_runs(world, data, Path(run_root))
        # A smoothing method over compressed gradients (int8, error feedback).
        case = config("gaussian", grad_compression="int8", error_feedback=True)
        results["smooth_compressed"] = (
            Trainer(case, data=data, world=world).fit().model.state_dict()
        )
    results["root"] = run_root
    return results


#: Gradient exchanges trained through the trainer (one process has none to compress).
COMPRESSED = {
    "fp16": {},
    "int8": {"error_feedback": True},
    "int8-2sided": {"error_feedback": True},
    "powersgd": {"powersgd_rank": 2},
}


def compressed_runs(world: World, data: Any, root: Path) -> dict[str, Any]:
    """Each compression's weights, history and model.json; int8 with error feedback also
    stopped after step 3 and resumed (its rounding RNG and residuals come back)."""
    results: dict[str, Any] = {}
    for name, extra in COMPRESSED.items():
        case = config("fast", grad_compression=name, epochs=2, **extra)
        trainer = Trainer(case, root / f"compressed-{name}", data=data, world=world)
        result = trainer.fit()
        results[name] = {"weights": trainer.model.state_dict(), "history": result.history,
                         "meta": result.metadata}  # fmt: skip
    case = config("fast", grad_compression="int8", error_feedback=True, epochs=2)
    stopper = Trainer(case, root / "int8-stopped", data=data, world=world,
                      on_step=lambda t, step: t.request_stop() if step == 3 else None)  # fmt: skip
    with contextlib.suppress(TrainingInterrupted):
        stopper.fit()
    resumed = Trainer(case, root / "int8-stopped", data=data, world=world)
    resumed.resume()
    resumed.fit()
    results["int8-resumed"] = resumed.model.state_dict()
    return results


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    root = tmp_path_factory.mktemp("dist")
    torch.set_num_threads(1)
    single = train_all(World(), str(root))
    workers = run_workers(train_all, root, str(root))
    return single, workers


@pytest.mark.parametrize("method", list(METHODS))
def test_two_workers_train_the_single_process_model(runs, method):
    """Equal up to summation order, measured against how far training moved each tensor: sign
    steps (L-inf attacks) turn float noise in a near-zero gradient into a different pixel, so
    the gap grows with the steps; it stays under 1% of the update (TRADES, whose attack starts
    where its loss is flat, comes closest), where a wrong shard or noise key gives ~100%."""
    single, (rank0, _) = runs
    start, one, two = (r[method][k] for r, k in
                       ((single, "initial"), (single, "weights"), (rank0, "weights")))  # fmt: skip
    for name, value in one.items():
        if value.is_floating_point():
            gap, moved = (value - two[name]).norm(), (value - start[name]).norm()
            assert gap <= 0.01 * moved + 1e-6, f"{name}: {gap:.3g} apart after moving {moved:.3g}"


@pytest.mark.parametrize("method", list(METHODS))
def test_ranks_hold_identical_weights(runs, method):
    """DDP averages the gradients: every rank takes the same step, to the bit."""
    _, (rank0, rank1) = runs
    for name, value in rank0[method]["weights"].items():
        assert torch.equal(value, rank1[method]["weights"][name]), name


def test_metrics_and_validation_are_over_the_global_batch(runs):
    single, (rank0, rank1) = runs
    for method in METHODS:
        (one,), (two,) = single[method]["history"], rank0[method]["history"]
        timings = {k: v for k, v in two.items() if k.endswith("_seconds")}  # each rank's own
        assert two == rank1[method]["history"][0] | timings
        for key in ("train_loss", "train_acc", "val_clean", "val_pgd", "co_clean", "co_pgd"):
            if key in one:
                assert two[key] == pytest.approx(one[key], abs=2 / 64), (method, key)
    assert [c["step"] for c in rank0["fast"]["history"][0]["co_checks"]] == [2, 4]


def test_a_stop_on_one_rank_checkpoints_all_and_resumes_exactly(runs):
    _, workers = runs
    for rank in workers:
        assert rank["stopped"]
        for name, value in rank["straight"].items():
            assert torch.equal(value, rank["resumed"][name]), name


def test_a_smoothing_run_stopped_on_one_rank_resumes_exactly(runs):
    single, workers = runs
    for result in (single, *workers):
        for name, value in result["smooth_straight"].items():
            assert torch.equal(value, result["smooth_resumed"][name]), name


def test_a_smoothing_method_trains_over_compressed_gradients(runs):
    single, (rank0, rank1) = runs
    for name, value in rank0["smooth_compressed"].items():
        assert torch.equal(value, rank1["smooth_compressed"][name]), name
        moved = (single["gaussian"]["weights"][name] - single["gaussian"]["initial"][name]).norm()
        assert (value - single["gaussian"]["weights"][name]).norm() <= 0.1 * moved + 1e-6, name


def test_the_library_train_joins_a_process_group_its_caller_started(runs):
    single, (rank0, rank1) = runs
    for name, value in rank0["library"].items():
        assert torch.equal(value, rank1["library"][name]), name
        torch.testing.assert_close(value, single["library"][name], rtol=1e-4, atol=1e-5)


def test_a_two_worker_checkpoint_resumes_on_one_process(runs):
    """Free-AT's perturbation, held as two slices, is joined into the one-process batch: the
    resumed run ends where two workers end, up to summation order."""
    _, (rank0, _) = runs
    root = Path(rank0["root"])
    resumed = Trainer(config("free", epochs=2), root / "free-left-2", data=small_data())
    resumed.resume()
    resumed.fit()
    for name, value in resumed.model.state_dict().items():
        # Two epochs of float summation in another order: a weight of 1e-2 may move by 1e-5.
        torch.testing.assert_close(value, rank0["straight"][name], rtol=1e-4, atol=3e-5)


def test_batchnorm_statistics_are_averaged_over_the_workers(runs):
    _, (rank0, rank1) = runs
    for name, value in rank0["bn_buffers"].items():
        assert torch.equal(value, rank1["bn_buffers"][name]), name


def test_every_compression_keeps_the_ranks_identical_and_counts_its_bytes(runs):
    """Through the trainer: the ranks agree to the bit, metrics.jsonl and model.json carry the
    bytes the analytic model gives (cnn-small's gradient in one bucket at W = 2), and training
    stays close to the uncompressed run."""
    from advkit.distributed.compression import estimate_bytes

    _, (rank0, rank1) = runs
    sizes = [p.numel() for p in create_model("cnn-small", num_classes=10).parameters()]
    numel = sum(sizes)
    fp32_wire = estimate_bytes(numel, "none", 2)[1]
    fp32 = rank0["fast"]["history"][-1]
    assert (fp32["comm_bytes_per_iter"], fp32["comm_wire_bytes_per_iter"]) == (4 * numel,) * 2
    for name in COMPRESSED:
        mine, theirs = rank0["compressed"][name], rank1["compressed"][name]
        for key, value in mine["weights"].items():
            assert torch.equal(value, theirs["weights"][key]), (name, key)
        last = mine["history"][-1]
        assert last["comm_iterations"] == 5  # 320 images in batches of 64
        assert 0 <= last["comm_seconds"] <= last["epoch_seconds"]
        assert last["compute_seconds"] == pytest.approx(
            last["epoch_seconds"] - last["comm_seconds"], abs=2e-3
        )
        comm = mine["meta"]["communication"]
        assert comm["compression"] == name and comm["comm_iterations"] == 10
        if name != "powersgd":
            payload, wire = estimate_bytes(sizes, name, 2)
            assert last["comm_bytes_per_iter"] == round(payload)
            assert comm["comm_wire_bytes_per_iter"] == round(wire)
        share = {"fp16": 0.5, "int8": 0.25, "int8-2sided": 0.25}.get(name)
        if share:
            assert comm["comm_wire_bytes_per_iter"] / fp32_wire == pytest.approx(share, rel=0.05)
    powersgd = rank0["compressed"]["powersgd"]["meta"]["communication"]
    assert powersgd["comm_wire_bytes_per_iter"] < 0.5 * fp32_wire  # vanilla in its first steps


def test_a_compressed_run_resumes_exactly(runs):
    """int8 with error feedback, stopped after step 3 and resumed: the rounding draws and the
    residuals continue, so the weights are the uninterrupted run's to the bit."""
    _, (rank0, _) = runs
    straight = rank0["compressed"]["int8"]["weights"]
    for name, value in rank0["compressed"]["int8-resumed"].items():
        assert torch.equal(value, straight[name]), name
