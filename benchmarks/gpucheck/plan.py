"""The checks, in order: a training step of every method (fp32, bf16 and fp16 autocast),
channels-last, torch.compile, one and several workers, SyncBatchNorm, a streamed image folder,
then evaluation (every suite), the analyses and certification of one of those runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gpucheck.data import write_image_folder
from gpucheck.features import Features
from gpucheck.profile import Profile
from gpucheck.runner import Check

#: Options that keep a method's step short (attack steps, replays); other methods take none.
METHOD_ARGS = {
    "pgd": ["--steps", "2"], "trades": ["--steps", "2"], "free": ["--replays", "2"],
    "smoothadv": ["--steps", "2", "--num-noise", "2", "--norm", "l2", "--eps", "0.5"],
}  # fmt: skip
#: The method of the single-feature checks and of the run that evaluation and analyses read.
MAIN_METHOD = "pgd"


def read_model_json(run: Path) -> dict:
    return json.loads((run / "model.json").read_text())


def expect(run: Path, what: str, get: Callable[[dict], object], wanted: object) -> Callable:
    """A verification: ``get(model.json)`` of ``run`` equals ``wanted``."""

    def verify() -> str | None:
        try:
            found = get(read_model_json(run))
        except (OSError, KeyError, ValueError, TypeError) as error:
            return f"{run}/model.json: {what} unreadable ({error})"
        return None if found == wanted else f"{what} is {found!r}, expected {wanted!r}"

    return verify


def autocast_recorded(run: Path, dtype: str) -> Callable:
    """The run autocast to ``dtype``, where its model.json records the precision (an advkit
    with ``--amp-dtype`` does: a dtype torch cannot autocast to must not train in float32)."""

    def verify() -> str | None:
        precision = read_model_json(run).get("precision")
        found = precision.get("autocast") if isinstance(precision, dict) else None
        return None if found in (None, dtype) else f"precision.autocast is {found!r}, not {dtype}"

    return verify


def on_device(run: Path, profile: Profile) -> Callable:
    """The run trained on the profile's device type (model.json's device, e.g. cuda:0)."""
    return expect(run, "device", lambda meta: str(meta["device"]).split(":")[0], profile.device)


class Planner:
    """Builds the checks of ``profile`` writing their runs under ``runs``."""

    def __init__(self, profile: Profile, features: Features, runs: Path) -> None:
        self.profile = profile
        self.features = features
        self.runs = runs
        self.main = MAIN_METHOD if MAIN_METHOD in features.methods else features.methods[0]

    def train(
        self, name: str, method: str, extra: list[str], *, workers: int = 1,
        data: list[str] | None = None,
    ) -> Check:  # fmt: skip
        run = self.runs / name
        argv = [*self.profile.train_base(workers=workers, data=data), "--method", method,
                *METHOD_ARGS.get(method, []), *extra, "--out", str(run)]  # fmt: skip
        return Check(name, argv, verify=on_device(run, self.profile))

    def checks(self, *, include_compile: bool) -> list[Check]:
        return [
            *self.method_checks(),
            *self.feature_checks(include_compile=include_compile),
            *self.worker_checks(),
            self.folder_check(),
            *self.reading_checks(),
        ]

    def method_checks(self) -> list[Check]:
        """Every registered method: fp32, --amp (bf16) and, where advkit has it, fp16."""
        bf16 = ["--amp", "--amp-dtype", "bf16"] if self.features.amp_dtype else ["--amp"]
        checks = []
        for method in self.features.methods:
            checks.append(self.train(f"train-{method}", method, []))
            for dtype, extra in (("bf16", bf16), ("fp16", ["--amp", "--amp-dtype", "fp16"])):
                check = self.train(f"amp-{dtype}-{method}", method, extra)
                check.verify = _all(check.verify, autocast_recorded(self.runs / check.name, dtype))
                if dtype == "fp16" and not self.features.amp_dtype:
                    check.skip = "this advkit has no --amp-dtype (advkit train --help)"
                checks.append(check)
        return checks

    def feature_checks(self, *, include_compile: bool) -> list[Check]:
        channels_last = self.train("channels-last", self.main, ["--channels-last"])
        compiled = self.train("compile", self.main, ["--compile"])
        if self.profile.smoke and not include_compile:
            compiled.skip = (
                "torch.compile's first C++ build costs ~30 s on a CPU; --include-compile runs it"
            )
        return [channels_last, compiled]

    def worker_checks(self) -> list[Check]:
        """--nproc 1; --nproc W (a worker per GPU with NCCL, or 2 gloo workers on a CPU);
        --sync-bn over the same workers."""
        profile, workers = self.profile, max(1, self.profile.workers)
        launch = ["--nproc", str(workers), "--dist-backend", profile.backend]
        single = self.train("nproc-1", self.main, ["--nproc", "1"])
        name = f"nproc-{workers}" if workers > 1 else "nproc-gpus"
        several = self.train(name, self.main, launch, workers=workers)
        several.note = f"{workers} {profile.backend} workers"
        several.verify = _all(
            several.verify,
            expect(self.runs / name, "workers", lambda meta: meta["workers"], workers),
        )
        if workers < 2:
            several.skip = "one GPU: several NCCL workers need a GPU each (nproc-1 ran one)"
        sync = self.train("sync-bn", self.main, ["--sync-bn", *launch], workers=workers)
        if profile.smoke:
            sync.skip = "SyncBatchNorm has no CPU kernel (advkit refuses --sync-bn on a CPU)"
        elif workers < 2:
            sync.note = "one GPU: one worker, so advkit leaves BatchNorm unconverted"
        else:
            sync.note = f"SyncBatchNorm over {workers} NCCL workers"
        return [single, several, sync]

    def folder_check(self) -> Check:
        """A streamed image folder: data workers decode batches; on CUDA into pinned memory."""
        profile = self.profile
        root = self.runs.parent / "data" / "folder"
        folder = ["--dataset", "imagefolder", "--data-dir", str(root)]
        streamed = ["--data-loading", "stream", "--data-workers", "2"]
        check = self.train("stream-folder", self.main, streamed, data=folder)
        run = self.runs / check.name
        check.verify = _all(
            check.verify,
            expect(run, "data_loading.path", lambda m: m["data_loading"]["path"], "stream"),
            expect(run, "data_loading.workers", lambda m: m["data_loading"]["workers"], 2),
        )
        check.prepare = lambda: write_image_folder(
            root, train=profile.batch_size + profile.val_size, test=profile.eval_examples,
            size=profile.image_size, rgb=profile.rgb,
        )  # fmt: skip
        pinned = "into pinned memory" if profile.device == "cuda" else "(pinned only on CUDA)"
        check.note = f"PNGs, 2 data workers {pinned}"
        return check

    def reading_checks(self) -> list[Check]:
        """Evaluation in every registered suite, the analyses and certification, on the
        profile's device, of the main method's fp32 run."""
        source = f"train-{self.main}"
        run, examples = str(self.runs / source), str(self.profile.eval_examples)
        checks = [
            self.read(f"eval-{suite}", ["eval", run, "--suite", suite, "--n-examples", examples])
            for suite in self.features.suites
        ]
        analyze = ["analyze", run, "--examples", str(self.profile.analyze_examples)]
        checks.append(self.read("analyze", [*analyze, *self.profile.analyze_sets]))
        checks.append(self.certify_check(run))
        return checks

    def read(self, name: str, argv: list[str]) -> Check:
        """A command reading the main method's run, writing into its own folder."""
        common = ["--device", self.profile.device, "--quiet", "--out", str(self.runs / name)]
        return Check(name, [*argv, *common], needs=f"train-{self.main}")

    def certify_check(self, run: str) -> Check:
        """``advkit certify RUN`` with those of the usual options it takes (it is newer than
        this script: its parser says which)."""
        usual = {"--n-examples": str(self.profile.eval_examples), "--device": self.profile.device,
                 "--quiet": None, "--out": str(self.runs / "certify"), "--sigma": "0.25",
                 # a check, not the paper's 100,000 draws per image: 2,000 on a GPU, 200 in smoke
                 "--n": "200" if self.profile.smoke else "2000",
                 "--empirical-examples": "2", "--empirical-n": "100"}  # fmt: skip
        argv = ["certify", run]
        for flag, value in usual.items():
            if flag in self.features.certify_options:
                argv += [flag] if value is None else [flag, value]
        check = Check("certify", argv, needs=f"train-{self.main}")
        if not self.features.certify:
            check.skip = "this advkit has no certify command (advkit --help)"
        return check


def _all(*verifies: Callable[[], str | None] | None) -> Callable[[], str | None]:
    """One verification: the first failure of ``verifies``."""

    def verify() -> str | None:
        for one in verifies:
            problem = one() if one is not None else None
            if problem is not None:
                return problem
        return None

    return verify
