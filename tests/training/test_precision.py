"""Mixed precision: --amp-dtype, fp16's loss scaling (weight update and attack gradients), the
scaler's state through a checkpoint, and the refusal where torch cannot autocast."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit import runs
from advkit.attacks.gradients import input_gradient, loss_scaled
from advkit.config import ConfigError, TrainConfig, load_config, save_config
from advkit.config_resume import resume_changes
from advkit.errors import DeviceError
from advkit.training import Trainer, TrainingInterrupted
from advkit.training.precision import Precision, check_autocast
from tests.training.test_trainer import _weights, small_config


def test_amp_dtype_without_amp_is_refused_in_one_line():
    with pytest.raises(ConfigError, match="--amp-dtype fp16 sets the dtype --amp autocasts to"):
        TrainConfig(amp_dtype="fp16").validate()
    with pytest.raises(ConfigError, match="amp_dtype must be one of bf16, fp16"):
        TrainConfig(amp=True, amp_dtype="fp32").validate()
    assert TrainConfig(amp=True, amp_dtype="fp16").validate().amp_dtype == "fp16"
    assert Precision(TrainConfig(amp=True), torch.device("cpu")).name == "bf16"  # the default


def test_amp_dtype_is_kept_on_resume():
    saved = TrainConfig(amp=True)
    with pytest.raises(ConfigError, match="--amp-dtype fp16 differs from the run's"):
        resume_changes(saved, TrainConfig(amp=True, amp_dtype="fp16"))


def test_a_run_config_written_before_amp_dtype_still_loads(tmp_path):
    """Runs written before --amp-dtype have no amp_dtype key: they autocast to bfloat16."""
    path = tmp_path / runs.CONFIG_FILE
    save_config(TrainConfig(amp=True), path)
    text = path.read_text()
    path.write_text("".join(line for line in text.splitlines(True) if "amp_dtype" not in line))
    config = load_config(path, complete=True)
    assert config.amp and config.amp_dtype is None


def test_autocast_refused_in_one_line_where_torch_cannot(monkeypatch):
    with pytest.raises(DeviceError, match=r"cannot autocast meta to torch\.float16") as caught:
        check_autocast(torch.device("meta"), "fp16")
    assert "\n" not in str(caught.value) and "use --amp-dtype bf16, or drop --amp" in str(
        caught.value
    )

    def disabling(device_type, dtype):  # what torch does for a dtype a CPU build lacks
        message = "In CPU autocast, but the target dtype is not supported. Disabling autocast."
        warnings.warn(message, stacklevel=2)

    monkeypatch.setattr(torch, "autocast", disabling)
    with pytest.raises(DeviceError, match=r"cannot autocast cpu to torch.float16 \(In CPU"):
        Precision(TrainConfig(amp=True, amp_dtype="fp16"), torch.device("cpu"))


def _input_gradient(margin: float, scale: float | None, fp16: bool = True) -> torch.Tensor:
    """The input gradient of a linear model's summed CE on samples it classifies right by about
    ``margin`` logits (the gradient shrinks as exp(-margin)), under fp16 autocast or in float32."""
    torch.manual_seed(0)
    model = nn.Linear(64, 10)
    with torch.no_grad():
        model.bias[0] = margin
    inputs = torch.rand(8, 64, requires_grad=True)
    labels = torch.zeros(8, dtype=torch.long)
    with torch.autocast("cpu", torch.float16, enabled=fp16), loss_scaled(scale):
        loss = F.cross_entropy(model(inputs).float(), labels, reduction="sum")
        return input_gradient(loss, inputs)


def test_fp16_attack_gradients_are_loss_scaled_not_flushed_to_zero():
    """A margin of 18 logits makes input gradients of about 1e-8, below float16's smallest
    value (6e-8): its backward returns zeros, and an attack stalls on such confident samples.
    Scaled, they come back as in float32."""
    exact = _input_gradient(18.0, None, fp16=False)

    def error(grad):
        return float((grad - exact).abs().max() / exact.abs().max())

    plain, scaled = _input_gradient(18.0, None), _input_gradient(18.0, 2.0**16)
    assert (plain == 0).all()  # what loss scaling fixes
    assert error(scaled) < 1e-2 and scaled.dtype == torch.float32


def test_an_overflowed_scaled_input_gradient_comes_back_zero_not_nan():
    scaled = _input_gradient(0.0, 1e30)  # float16's largest value is 65504
    assert torch.isfinite(scaled).all() and (scaled == 0).all()


def _fp16_config():
    return small_config(amp=True, amp_dtype="fp16", method="free", replays=2, grad_clip=5.0)


def _fast_scaler(trainer: Trainer) -> Trainer:
    """A scaler that grows every 3 updates from 2**20: its scale moves (up, and down on
    overflows) within the few steps of a test, so a resume that forgot it would differ."""
    trainer.precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**20, growth_interval=3)
    return trainer


def test_an_fp16_run_resumes_bit_exact_with_its_loss_scale(fashion_small, tmp_path):
    """Free-AT under fp16: its one backward per replay (weights and delta) goes through the
    scaler; the checkpoint keeps the scale and its growth count, so the resumed run ends with
    the uninterrupted one's weights, bit for bit."""
    config = _fp16_config()
    straight = _fast_scaler(Trainer(config, tmp_path / "straight", data=fashion_small))
    straight.fit()
    assert straight.precision.scaler.get_scale() != 2.0**20  # it moved
    meta = runs.load_metadata(tmp_path / "straight")
    assert meta["precision"] == {
        "autocast": "fp16",
        "loss_scale": straight.precision.scaler.get_scale(),
    }

    def stop_mid_epoch(trainer, step):
        if step == 11:
            trainer.request_stop()

    stopped = _fast_scaler(
        Trainer(config, tmp_path / "resumed", data=fashion_small, on_step=stop_mid_epoch)
    )
    with pytest.raises(TrainingInterrupted):
        stopped.fit()
    saved = torch.load(tmp_path / "resumed" / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT,
                       weights_only=True)  # fmt: skip
    assert saved["scaler"]["scale"] == stopped.precision.scaler.get_scale()
    resumed = _fast_scaler(Trainer(config, tmp_path / "resumed", data=fashion_small))
    resumed.resume()
    assert resumed.precision.scaler.state_dict() == stopped.precision.scaler.state_dict()
    resumed.fit()
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_float32_and_bf16_runs_hold_no_scaler_state(fashion_small):
    for amp in (False, True):
        trainer = Trainer(small_config(amp=amp, epochs=1), None, data=fashion_small)
        assert not trainer.precision.scaling and trainer.state_dict()["scaler"] == {}


def test_model_json_records_the_backend_flags(fashion_small, tmp_path):
    trainer = Trainer(small_config(epochs=1), tmp_path, data=fashion_small)
    trainer.fit()
    meta = runs.load_metadata(tmp_path)
    flags = meta["backends"]
    assert flags["cudnn_benchmark"] == torch.backends.cudnn.benchmark
    assert flags["cudnn_deterministic"] == torch.backends.cudnn.deterministic
    assert flags["cudnn_allow_tf32"] == torch.backends.cudnn.allow_tf32
    assert flags["cuda_matmul_allow_tf32"] == torch.backends.cuda.matmul.allow_tf32
    assert "device_name" not in flags  # CPU: no GPU to name
    assert meta["precision"] == {"autocast": "float32"}
