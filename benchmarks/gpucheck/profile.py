"""Sizes and devices of a check run: a CUDA machine's, or the CPU smoke run's tiny shapes (the
same checks, so the script is exercised in CI without a GPU)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gpucheck import data

#: CIFAR-10 as the shared data folder holds it (see ../shared/data/README.md).
CIFAR_FILE = "cifar10.npz"


@dataclass(frozen=True)
class Profile:
    """What every check's command line shares."""

    smoke: bool
    device: str  # advkit's --device
    backend: str  # --dist-backend with several workers
    workers: int  # --nproc of the multi-worker checks: the GPUs, or 2 gloo workers on a CPU
    gpus: int
    data: list[str]  # --dataset ... --data-dir ...
    data_note: str
    model: str
    image_size: int
    rgb: bool
    batch_size: int
    val_size: int
    eval_examples: int
    analyze_examples: int
    analyze_sets: list[str]  # --set NAME.KEY=VALUE of analyze, to keep it short
    real_cifar: bool

    def train_base(self, *, workers: int = 1, data: list[str] | None = None) -> list[str]:
        """One weight update of a run: one batch of training images (rounded up to a multiple
        of ``workers``), one of validation; ``data`` replaces the profile's data options."""
        batch = -(-self.batch_size // workers) * workers
        return [
            "train", "--quiet", *(data or self.data), "--model", self.model,
            "--device", self.device, "--epochs", "1", "--batch-size", str(batch),
            "--subset", str(batch),
            "--val-size", str(self.val_size), "--val-examples", str(self.val_size),
            "--val-steps", "2", "--seed", "0",
        ]  # fmt: skip


def gpu_profile(data_dir: Path, work: Path) -> Profile:
    """PreAct ResNet-18 on CIFAR-10 (a synthetic stand-in when ``data_dir`` lacks it), a batch
    of 128, on ``cuda`` with NCCL, one worker per GPU."""
    import torch

    gpus = torch.cuda.device_count()
    cifar = data_dir / CIFAR_FILE
    if cifar.is_file():
        args, note = ["--dataset", "cifar10", "--data-dir", str(data_dir)], f"CIFAR-10 ({cifar})"
    else:
        fake = data.write_npz(work / "cifar-shaped.npz", train=1024, test=512, shape=(32, 32, 3))
        args = ["--dataset", "npz", "--data-dir", str(fake)]
        note = f"synthetic CIFAR-shaped images: {cifar} not found (--data-dir)"
    return Profile(
        smoke=False, device="cuda", backend="nccl", workers=gpus, gpus=gpus, data=args,
        data_note=note, model="preact-resnet18", image_size=32, rgb=True,
        batch_size=128, val_size=128, eval_examples=256, analyze_examples=64, analyze_sets=[],
        real_cifar=cifar.is_file(),
    )  # fmt: skip


def smoke_profile(work: Path) -> Profile:
    """cnn-small on 28x28 synthetic images, batches of 16, on the CPU with 2 gloo workers."""
    tiny = data.write_npz(work / "tiny.npz", train=64, test=32, shape=(28, 28))
    sets = ["loss_landscape.grid=5", "loss_landscape.average=2", "large_eps.count=2",
            "large_eps.steps=2", "layer_criticality.examples=8", "per_class.steps=2"]  # fmt: skip
    return Profile(
        smoke=True, device="cpu", backend="gloo", workers=2, gpus=0,
        data=["--dataset", "npz", "--data-dir", str(tiny)],
        data_note="synthetic 28x28 images (CPU smoke run)", model="cnn-small", image_size=28,
        rgb=False, batch_size=16, val_size=16, eval_examples=16, analyze_examples=8,
        analyze_sets=[arg for value in sets for arg in ("--set", value)], real_cifar=False,
    )  # fmt: skip
