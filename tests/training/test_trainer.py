from __future__ import annotations

import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from advkit import runs
from advkit.config import TrainConfig
from advkit.methods import METHODS, StepContext
from advkit.models import create_model
from advkit.training import Trainer, TrainingInterrupted, train


def small_config(**overrides) -> TrainConfig:
    values = dict(
        dataset="fashion-mnist",
        model="cnn-small",
        method="pgd",
        eps=0.1,
        steps=2,
        epochs=2,
        batch_size=64,
        lr=0.05,
        val_examples=128,
        val_steps=3,
        quiet=True,
        seed=3,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_pgd_training_reduces_loss_and_writes_run_folder(fashion_small, tmp_path):
    result = train(small_config(epochs=3, schedule="constant"), tmp_path, data=fashion_small)
    losses = [r["train_loss"] for r in result.history]
    assert losses[-1] < losses[0]
    for name in [
        "config.yaml",
        "metrics.jsonl",
        "model.safetensors",
        "model.json",
        "curves.png",
        "checkpoints/last.pt",
        "checkpoints/best.safetensors",
    ]:
        assert (tmp_path / name).is_file(), name
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    meta = runs.load_metadata(tmp_path)
    assert meta["threat"] == {"norm": "linf", "eps": 0.1}
    assert meta["method"]["name"] == "pgd" and meta["method"]["steps"] == 2
    model = runs.load_model(tmp_path)
    assert not model.training
    inputs = fashion_small.test.images[:8].float() / 255
    assert model(inputs).shape == (8, 10)


def _weights(run_dir):
    return load_file(str(run_dir / runs.MODEL_FILE))


def test_interrupted_and_resumed_run_matches_uninterrupted(fashion_small, tmp_path):
    """Bit for bit, on purpose: both runs are in one process, on the same data, shapes and thread
    count, and the checkpoint comes back through ``torch.load`` (64-byte-aligned storage) and is
    copied into the new model's own parameters, so every kernel takes the same path. Any
    difference is state the checkpoint forgot (an RNG, a buffer, the schedule), not rounding."""
    config = small_config(ema_decay=0.9)
    train(config, tmp_path / "straight", data=fashion_small)

    def stop_mid_epoch(trainer, step):
        if step == 11:  # epoch 2 of 8 batches each, in the middle
            trainer.request_stop()

    trainer = Trainer(config, tmp_path / "resumed", data=fashion_small, on_step=stop_mid_epoch)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.fit()
    resumed = Trainer(config, tmp_path / "resumed", data=fashion_small)
    resumed.resume()
    assert (resumed.epoch, resumed.batch) == (1, 3)
    resumed.fit()
    straight, again = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    assert straight.keys() == again.keys()
    for name in straight:
        assert torch.equal(straight[name], again[name]), name
    metrics = [
        json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()
    ]
    expected = [
        json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    ]
    for got, want in zip(metrics, expected, strict=True):
        assert got["train_loss"] == want["train_loss"] and got["val_pgd"] == want["val_pgd"]


def test_sigint_saves_checkpoint_and_stops(fashion_small, tmp_path):
    def interrupt(trainer, step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a shell's background job
    trainer = Trainer(small_config(), tmp_path, data=fashion_small, on_step=interrupt)
    with pytest.raises(TrainingInterrupted):
        trainer.fit()
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert state["global_step"] == 2
    assert signal.getsignal(signal.SIGINT) is before


@pytest.mark.parametrize("method", ["pgd", "free"])
def test_bfloat16_autocast_trains(fashion_small, method):
    result = train(small_config(amp=True, method=method, epochs=1, replays=2), data=fashion_small)
    assert result.history[0]["train_loss"] > 0
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_adam_optimizer_trains(fashion_small):
    config = small_config(
        optimizer="adam", lr=5e-3, weight_decay=0.0, epochs=2, schedule="constant"
    )
    trainer = Trainer(config, data=fashion_small)
    assert type(trainer.optimizer).__name__ == "Adam"
    result = trainer.fit()
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_select_last_versus_best(fashion_small, tmp_path):
    result = train(small_config(select="last", epochs=1), tmp_path, data=fashion_small)
    assert result.selected_epoch == 1
    assert runs.load_metadata(tmp_path)["selected"] == "last"


def test_eps_warmup_ramps(fashion_small):
    trainer = Trainer(small_config(eps_warmup_epochs=2), data=fashion_small)
    first = trainer.current_eps()
    trainer.epoch, trainer.batch = 1, 4
    assert 0 < first < trainer.current_eps() < 0.1
    trainer.epoch = 2
    assert trainer.current_eps() == pytest.approx(0.1)


def test_paper_epochs_divides_passes_by_replays(fashion_small):
    if "free" not in METHODS:
        pytest.skip("free not registered")
    config = small_config(method="free", replays=4, epochs=8, paper_epochs=True)
    trainer = Trainer(config, data=fashion_small)
    assert trainer.epochs == 2
    assert trainer.total_updates == 2 * trainer.batches_per_epoch * 4


def test_pgd_attack_in_training_respects_budget_and_leaves_grads(fashion_small):
    method = METHODS.get("pgd")(steps=3)
    model = create_model("cnn-small", 10, fashion_small.mean, fashion_small.std)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    inputs = fashion_small.train.images[:32].float() / 255
    labels = fashion_small.train.labels[:32]
    grads_at_optimize = []

    def optimize(loss):
        grads_at_optimize.append([p.grad for p in model.parameters()])
        loss.backward()

    out = method.step(inputs, labels, StepContext(model, model, optimize, eps=0.1))
    assert all(g is None for g in grads_at_optimize[0])
    assert len(seen) == 4  # 3 attack steps, 1 training forward
    for batch in seen:
        assert (batch - inputs).abs().max() <= 0.1 + 1e-6
        assert batch.min() >= 0 and batch.max() <= 1
    assert out.logits.shape == (32, 10)


def test_no_normalize_feeds_raw_pixels_and_the_saved_model_agrees(fashion_small, tmp_path):
    result = train(small_config(normalize=False, epochs=1), tmp_path, data=fashion_small)
    meta = runs.load_metadata(tmp_path)
    assert meta["mean"] == [0.0] and meta["std"] == [1.0]
    normalize = result.model.normalize
    assert normalize.mean.tolist() == [0.0] and normalize.std.tolist() == [1.0]
    inputs = fashion_small.test.images[:8].float() / 255
    loaded = runs.load_model(tmp_path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), result.model.eval()(inputs))


@pytest.mark.parametrize(("method", "steps", "expected"), [
    ("pgd", None, 7), ("trades", None, 10), ("trades", 3, 3), ("pgd", 2, 2),
])  # fmt: skip
def test_steps_default_to_the_method_own(fashion_small, method, steps, expected):
    trainer = Trainer(small_config(method=method, steps=steps), data=fashion_small)
    assert trainer.method.steps == expected


def test_a_diverged_run_stops_and_keeps_its_best_epoch(fashion_small, tmp_path, caplog):
    """A non-finite training loss stops the run after that epoch (it used to train on at NaN
    for every remaining epoch); the best epoch's weights are what the run folder keeps."""

    def blow_up(trainer: Trainer, step: int) -> None:
        if step == 12:  # in epoch 2 of 8 batches: the weights become NaN, as a too-large LR does
            with torch.no_grad():
                for parameter in trainer.model.parameters():
                    parameter.fill_(float("nan"))

    config = small_config(epochs=5, method="natural", schedule="constant")
    trainer = Trainer(config, tmp_path, data=fashion_small, on_step=blow_up)
    with caplog.at_level("WARNING", logger="advkit.train"):
        result = trainer.fit()
    assert [r.get("diverged", False) for r in result.history] == [False, True]
    assert (
        "training diverged in epoch 2 (train loss nan): stopped; epoch 1's weights" in caplog.text
    )
    assert result.selected_epoch == 1
    assert all(torch.isfinite(v).all() for v in _weights(tmp_path).values())
    resumed = Trainer(config, tmp_path, data=fashion_small)
    resumed.resume()  # a resumed diverged run does not train on
    assert resumed.diverged and len(resumed.fit().history) == 2
