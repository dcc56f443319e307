"""``advkit.fit`` on a module advkit does not know, with the caller's own data in every form."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

import advkit
from advkit.config import ConfigError
from advkit.data import DataError
from advkit.methods import METHODS
from advkit.runs import RunError

SHAPE = (1, 12, 12)
FAST = {"epochs": 1, "batch_size": 32, "val_examples": 16, "steps": 2, "val_steps": 2}


class TinyNet(nn.Module):
    """A module defined here, in no registry: conv, BatchNorm, ReLU, linear."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, stride=2)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6 * 5 * 5, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def _quadrants(n: int = 160, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float images in [0, 1]: class k has a bright quadrant k on dim noise (learnable)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=gen)
    images = torch.rand(n, *SHAPE, generator=gen) * 0.3
    for i, k in enumerate(labels.tolist()):
        r, c = divmod(k, 2)
        images[i, :, r * 6 : r * 6 + 6, c * 6 : c * 6 + 6] += 0.6
    return images.clamp(0, 1), labels


def _fit(data, run_dir=None, seed: int = 0, **options):
    torch.manual_seed(seed)
    return advkit.fit(TinyNet(), data, run_dir=run_dir, **{**FAST, **options})


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class PairDataset(Dataset):
    """A plain map-style Dataset of (C, H, W) float tensors and int labels."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.images[i], int(self.labels[i])


def test_every_method_trains_an_unregistered_module_and_a_new_process_evaluates_it(tmp_path):
    images, labels = _quadrants()
    runs = {}
    for method in METHODS.names():
        result = _fit((images, labels), tmp_path / method, method=method, eps=0.05)
        assert len(result.history) == 1 and np.isfinite(result.history[0]["train_loss"])
        meta = json.loads((tmp_path / method / "model.json").read_text())
        assert meta["architecture"].startswith("python:") and meta["exported"] == {
            "file": "model.pt2"
        }
        with torch.no_grad():
            runs[method] = result.model(images[:16]).argmax(1).tolist()
    # A fresh interpreter that has never seen TinyNet: the run folders alone rebuild each model.
    script = textwrap.dedent(
        f"""
        import json, sys, torch, advkit
        from advkit.evaluation import evaluate
        g = torch.Generator().manual_seed(0)
        labels = torch.randint(0, 4, (160,), generator=g)
        images = (torch.rand(160, *{SHAPE}, generator=g) * 0.3)
        for i, k in enumerate(labels.tolist()):
            r, c = divmod(k, 2)
            images[i, :, r * 6:r * 6 + 6, c * 6:c * 6 + 6] += 0.6
        images = images.clamp(0, 1)
        out = {{}}
        for method in {list(runs)}:
            model = advkit.load_model(sys.argv[1] + "/" + method)
            with torch.no_grad():
                predictions = model(images[:16]).argmax(1).tolist()
            result = evaluate(model, images[:32], labels[:32], "quick", eps=0.05)
            out[method] = [predictions, result.accuracies()["clean"]]
        print(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for method, predictions in runs.items():
        assert loaded[method][0] == predictions, method
        assert 0.0 <= loaded[method][1] <= 1.0


def test_fit_learns(tmp_path):
    images, labels = _quadrants(320)
    result = _fit((images, labels), method="natural", epochs=4, lr=0.1, val_examples=64)
    assert result.history[-1]["val_clean"] > 0.9


def test_dataset_dataloader_numpy_and_uint8_give_the_same_run_as_tensors():
    images, labels = _quadrants()
    images = (images * 255).round() / 255  # exactly representable as uint8
    reference = _fit((images, labels), method="pgd", eps=0.05)
    as_uint8 = (images * 255).round().to(torch.uint8)
    for data in (
        PairDataset(images, labels),
        DataLoader(TensorDataset(images, labels), batch_size=32, shuffle=True),
        (images.numpy(), labels.numpy()),
        (images.numpy().transpose(0, 2, 3, 1), labels.numpy()),  # NHWC, numpy's convention
        (as_uint8, labels),
    ):
        result = _fit(data, method="pgd", eps=0.05)
        assert _same_weights(result.model, reference.model), type(data)
    # A Dataset too large for memory streams through DataLoader workers: the same run again.
    streamed = _fit(
        PairDataset(images, labels), method="pgd", eps=0.05, data_loading="stream", data_workers=1
    )
    assert streamed.metadata["data_loading"]["path"] == "stream"
    assert _same_weights(streamed.model, reference.model)


def test_a_dataloader_gives_its_batch_size_unless_one_is_set():
    images, labels = _quadrants()
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    options = {k: v for k, v in FAST.items() if k != "batch_size"}
    torch.manual_seed(0)
    assert advkit.fit(TinyNet(), loader, method="natural", **options).metadata["batch_size"] == 16
    assert _fit(loader, method="natural").metadata["batch_size"] == 32


def test_validation_split_is_held_out_or_taken_as_given():
    images, labels = _quadrants()
    held = _fit((images, labels), method="natural", val_examples=100)
    assert held.metadata["num_classes"] == 4
    given = _fit(
        (images, labels), method="natural", val_data=(images[:10], labels[:10]), val_examples=100
    )
    assert held.history[0]["val_clean"] * 16 == pytest.approx(
        round(held.history[0]["val_clean"] * 16)
    )  # min(5000, 160 // 10) = 16 held out
    assert given.history[0]["val_clean"] * 10 == pytest.approx(
        round(given.history[0]["val_clean"] * 10)
    )


def test_mean_std_put_the_normalization_inside():
    images, labels = _quadrants()
    result = _fit((images, labels), method="natural", mean=[0.3], std=[0.2])
    assert result.model.normalize.mean.tolist() == pytest.approx([0.3])
    assert result.metadata["mean"] == pytest.approx([0.3]) and result.metadata["std"] == [
        pytest.approx(0.2)
    ]


class Exploding(TinyNet):
    """Raises after ``fuse`` forwards in training mode: a run killed in its second epoch."""

    fuse = 10**9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            Exploding.fuse -= 1
            if Exploding.fuse < 0:
                raise RuntimeError("killed")
        return super().forward(x)


def test_a_killed_fit_resumes_to_the_uninterrupted_weights(tmp_path):
    images, labels = _quadrants()
    options = {**FAST, "epochs": 2, "checkpoint_every": 2, "method": "pgd", "eps": 0.05}
    torch.manual_seed(0)
    whole = advkit.fit(TinyNet(), (images, labels), run_dir=tmp_path / "whole", **options)
    torch.manual_seed(0)
    Exploding.fuse = 7  # training-mode forwards: killed in the second epoch (5 batches each)
    with pytest.raises(RuntimeError, match="killed"):
        advkit.fit(Exploding(), (images, labels), run_dir=tmp_path / "cut", **options)
    checkpoint = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)
    assert 0 < checkpoint["global_step"] < 10
    Exploding.fuse = 10**9
    resumed = advkit.fit(
        Exploding(), (images, labels), run_dir=tmp_path / "cut", resume=True, **options
    )
    assert _same_weights(resumed.model, whole.model)


class Stream(IterableDataset):
    def __iter__(self):
        yield torch.rand(*SHAPE), 0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ((torch.rand(8, *SHAPE) * 255, torch.zeros(8, dtype=torch.long)), "divide them by 255"),
        ((torch.rand(8, *SHAPE), torch.zeros(7, dtype=torch.long)), "8 images need 8 labels"),
        ((torch.rand(8, *SHAPE).double().int(), torch.zeros(8)), "uint8 .* or float"),
        ("mnist", "must be \\(images, labels\\)"),
        (Stream(), "IterableDataset"),
    ],
)
def test_bad_data_gets_a_one_line_error(data, message):
    with pytest.raises(DataError, match=message) as info:
        advkit.fit(TinyNet(), data, **FAST)
    assert "\n" not in str(info.value)


def test_bad_models_and_options_get_one_line_errors():
    data = _quadrants(40)
    with pytest.raises(DataError, match="returns 3 logits but the data has 4 classes"):
        advkit.fit(TinyNet(3), data, num_classes=4, **FAST)
    with pytest.raises(DataError, match="fails on a batch of the data's shape"):
        advkit.fit(TinyNet(), (torch.rand(40, 1, 10, 10), data[1]), **FAST)
    with pytest.raises(ConfigError, match="fit takes no dataset= option"):
        advkit.fit(TinyNet(), data, dataset="mnist", **FAST)
    with pytest.raises(ConfigError, match="no option 'epoch'"):
        advkit.fit(TinyNet(), data, epoch=3)
    with pytest.raises(ConfigError, match=r"nn\.Module"):
        advkit.fit(lambda x: x, data, **FAST)


def test_a_run_whose_model_cannot_be_exported_says_how_to_load_it(tmp_path, monkeypatch):
    import advkit.models.exported as exported

    def refuse(*args, **kwargs):
        raise RuntimeError("data-dependent control flow")

    monkeypatch.setattr(exported.torch.export, "export", refuse)
    _fit(_quadrants(40), tmp_path / "run", method="natural")
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert "data-dependent" in meta["exported"]["error"]
    with pytest.raises(RunError, match="build the module yourself"):
        advkit.load_model(tmp_path / "run")
    assert Path(tmp_path / "run" / "model.safetensors").is_file()


def _fit_on_a_worker(world, run_dir: Path) -> dict[str, torch.Tensor]:
    del world  # fit joins the process group the caller started, as under torchrun
    result = _fit(_quadrants(), run_dir, method="pgd", eps=0.05, epochs=2)
    return {"weights": result.model.state_dict(), "workers": result.metadata["workers"]}


def test_fit_trains_one_model_on_two_workers(tmp_path):
    from tests.distributed.spawn import run_workers

    ranks = run_workers(_fit_on_a_worker, tmp_path, tmp_path / "run")
    assert [r["workers"] for r in ranks] == [2, 2]
    first, second = (r["weights"] for r in ranks)
    assert all(torch.equal(first[k], second[k]) for k in first)
    loaded = advkit.load_model(tmp_path / "run")
    images = _quadrants()[0][:8]
    reference = TinyNet()
    reference.load_state_dict({k[4:]: v for k, v in first.items() if k.startswith("net.")})
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), reference.eval()(images))


def test_ema_and_the_overfitting_guard_work_on_a_callers_module(tmp_path):
    images, labels = _quadrants()
    result = _fit(
        (images, labels), tmp_path / "run", method="fast", eps=0.05, epochs=2,
        ema_decay=0.9, co_guard="rollback", co_check_every=2,
    )  # fmt: skip
    assert result.metadata["ema_decay"] == 0.9
    assert all("guard_pgd" in record or "co_checks" in record for record in result.history)
