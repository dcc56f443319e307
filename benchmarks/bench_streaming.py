"""The streamed data path against the in-memory one: PGD-AT on ``cnn-small``, an image folder of
Fashion-MNIST PNGs, per epoch, with 0, 1, 2, 3 data workers.

The folder is written once from advkit's own Fashion-MNIST reader (``train/<label>/NNNNN.png``,
``test/<label>/...``) and cached outside the repository (``--folder``). Every configuration is
one Trainer on that folder (the in-memory one decodes it once at set-up); after an untimed
warm-up epoch (the data workers start there), rounds of one epoch each are timed, the order of
the configurations rotating each round so that drifting machine load hits all alike. An epoch
is timed as the trainer runs it (``Trainer._train_epoch``: the batches, the PGD-7 steps, the
weight updates), over ``--train-images`` images. Reported: the median epoch, images per second,
the streamed/in-memory ratio of each round (median and range: each ratio compares epochs
seconds apart), the CPU seconds of an epoch summed over the training process and its data
workers (less disturbed by other processes on a shared machine than the wall clock), the loader
alone (one epoch of batches, decoded, converted and augmented, without training), the set-up
(listing, headers, statistics pass, workers' start).

    .venv/bin/python benchmarks/bench_streaming.py                       # defaults below
    .venv/bin/python benchmarks/bench_streaming.py --subset 6000 --rounds 3   # short
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from advkit.config import TrainConfig
from advkit.data import load_dataset
from advkit.training import Trainer

DEFAULT_FOLDER = Path("/work/runs/fmnist-png")


def write_folder(root: Path, subset: int | None) -> Path:
    """Fashion-MNIST as PNGs under ``root`` (the first ``subset`` training images and a sixth
    as many test images, or all), once: a finished folder holds ``.complete``."""
    folder = root if subset is None else root.with_name(f"{root.name}-{subset}")
    if (folder / ".complete").is_file():
        return folder
    data = load_dataset("fashion-mnist", val_size=0)
    counts = {"train": len(data.train), "test": len(data.test)}
    if subset is not None:
        counts = {"train": min(subset, counts["train"]), "test": min(subset // 6, counts["test"])}
    started = time.perf_counter()
    for split, count in counts.items():
        part = getattr(data, split)
        for i in range(count):
            path = folder / split / str(int(part.labels[i])) / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(part.images[i, 0].numpy()).save(path)
    (folder / ".complete").write_text(f"{counts}\n")
    print(f"# wrote {counts} PNGs to {folder} in {time.perf_counter() - started:.0f} s")
    return folder


def build(folder: Path, args: argparse.Namespace, path: str, workers: int) -> Trainer:
    config = TrainConfig(
        dataset="imagefolder", data_dir=str(folder), model="cnn-small", method="pgd",
        batch_size=args.batch_size, subset=args.train_images, val_size=args.val_size,
        val_examples=0, epochs=args.rounds + 2, quiet=True, seed=0, data_loading=path,
        data_workers=workers,
    )  # fmt: skip
    return Trainer(config)


def cpu_seconds(trainer: Trainer) -> float:
    """CPU seconds so far of this process and of the trainer's data workers (from /proc)."""
    total = time.process_time()
    reader = trainer.feed.reader
    iterator = getattr(reader._loader, "_iterator", None) if reader is not None else None
    for worker in getattr(iterator, "_workers", []):
        with open(f"/proc/{worker.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed_epoch(trainer: Trainer) -> tuple[float, float]:
    """Wall-clock and CPU seconds (training process and data workers) of one epoch."""
    cpu, started = cpu_seconds(trainer), time.perf_counter()
    trainer._train_epoch()
    seconds = time.perf_counter() - started
    trainer.epoch, trainer.batch = trainer.epoch + 1, 0
    return seconds, cpu_seconds(trainer) - cpu


def loader_epoch(trainer: Trainer, epoch: int) -> float:
    started = time.perf_counter()
    for _ in trainer.feed.batches(epoch=epoch, start_batch=0, first_step=0):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=DEFAULT_FOLDER)
    parser.add_argument("--subset", type=int, help="training images in the folder (default all)")
    parser.add_argument("--train-images", type=int, default=2560, help="per epoch")
    parser.add_argument("--val-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--threads", type=int, help="torch threads of training (default torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = write_folder(args.folder, args.subset)

    names = ["memory"] + [f"stream-{w}" for w in args.workers]
    trainers: dict[str, Trainer] = {}
    setup: dict[str, float] = {}
    for name in names:
        started = time.perf_counter()
        path, _, workers = name.partition("-")
        trainers[name] = build(folder, args, path, int(workers or 0))
        timed_epoch(trainers[name])  # warm-up: the workers start, kernels warm
        setup[name] = time.perf_counter() - started
        print(f"# {name}: set-up and warm-up epoch {setup[name]:.1f} s", flush=True)
    epochs: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    loader: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            wall, used = timed_epoch(trainers[name])
            epochs[name].append(wall)
            cpu[name].append(used)
            loader[name].append(loader_epoch(trainers[name], epoch=1000 + r))
        shown = " ".join(f"{n}={epochs[n][-1]:.2f}/{cpu[n][-1]:.2f}" for n in names)
        print(f"# round {r + 1}: epoch s (wall/cpu) {shown}", flush=True)
    for trainer in trainers.values():
        trainer.feed.close()

    images = len(trainers["memory"].train_data)
    print(f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, {torch.get_num_threads()} threads; PGD-7 (eps 0.1) on "
          f"cnn-small, batch {args.batch_size}, {images} images per epoch of {folder}; "
          f"{args.rounds} interleaved rounds after a warm-up epoch")  # fmt: skip
    print("| path | data workers | epoch s (median) | images/s | x in-memory, wall (median per "
          "round, range) | CPU s per epoch (all processes) | x in-memory, CPU | loader alone, "
          "images/s | set-up + first epoch s |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    best = {}
    for name in names:
        median = statistics.median(epochs[name])
        ratios = [a / b for a, b in zip(epochs[name], epochs["memory"], strict=True)]
        used = statistics.median(cpu[name])
        path, _, workers = name.partition("-")
        best[name] = median
        print(f"| {path} | {workers or '-'} | {median:.2f} | {images / median:.0f} | "
              f"{statistics.median(ratios):.3f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
              f"{used:.2f} | {used / statistics.median(cpu['memory']):.3f} | "
              f"{images / statistics.median(loader[name]):.0f} | {setup[name]:.1f} |")  # fmt: skip
    streamed = {n: t for n, t in best.items() if n != "memory"}
    fastest = min(streamed.values())
    saturating = next(n for n in streamed if streamed[n] <= 1.03 * fastest)
    print(f"saturates the step: {saturating.partition('-')[2]} data workers (the fewest within 3% "
          f"of the fastest streamed epoch, {fastest:.2f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
