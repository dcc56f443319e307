"""``advkit eval --model REF --weights FILE --dataset NAME``: a model advkit did not train.

The model is built from ``REF`` (a registered name, ``file.py:factory`` or
``package.module:factory``, with ``--model-arg``), the weights are read without unpickling code
(:func:`advkit.evaluation.external.load_external`), and it is evaluated as a run is. Its outputs
go into ``--out DIR`` (default: ``<weights folder>/<weights stem>-eval/``), named as in a run
folder, so they never replace another evaluation; the report names REF and the weights file with
its SHA-256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from advkit.config_values import parse_eps, parse_model_args
from advkit.errors import UserError

#: The options that describe an external model, and their flags (for messages).
EXTERNAL_OPTIONS = {"model": "--model", "weights": "--weights", "model_args": "--model-arg",
                    "mean": "--mean", "std": "--std"}  # fmt: skip


class ExternalArgsError(UserError, ValueError):
    """Options of ``advkit eval`` that do not go together."""


def add_external_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "a model advkit did not train (instead of RUN)",
        "e.g. advkit eval --model my_net.py:build --weights w.safetensors --dataset cifar10 "
        "--eps 8/255; outputs go to --out DIR (default <weights folder>/<weights stem>-eval/), "
        "never replacing another evaluation",
    )
    group.add_argument(
        "--model", metavar="REF",
        help="the architecture: a registered name (advkit models), path/to/file.py:FACTORY or "
        "package.module:FACTORY (given num_classes and in_channels if it takes them; default: "
        "none, RUN is evaluated)",
    )  # fmt: skip
    group.add_argument(
        "--weights", metavar="FILE",
        help="its weights: .safetensors, or a .pt/.pth state dict read with "
        "torch.load(weights_only=True) (never unpickling code); a bare network's state dict, an "
        "advkit model's (normalize.*, net.*), or a dict holding one under state_dict or model "
        "(default: none)",
    )  # fmt: skip
    group.add_argument(
        "--model-arg", dest="model_args", action="append", metavar="NAME=VALUE",
        help="a keyword argument of the model's factory, repeatable (default: its own)",
    )  # fmt: skip
    group.add_argument(
        "--mean", nargs="+", metavar="M",
        help="per-channel mean the model's input is normalized by, in [0,1] pixel units (with "
        "--std; the normalization is put inside the model; default: the model normalizes "
        "itself, or the weights carry advkit's)",
    )  # fmt: skip
    group.add_argument(
        "--std",
        nargs="+",
        metavar="S",
        help="per-channel std, with --mean (pixel units; default: none)",
    )


def is_external(args: argparse.Namespace) -> bool:
    """True when ``args`` name a model by --model/--weights rather than a RUN folder."""
    given = [flag for field, flag in EXTERNAL_OPTIONS.items() if getattr(args, field, None)]
    if args.run is not None:
        if given:
            raise ExternalArgsError(
                f"{given[0]} describes a model advkit did not train: give either RUN or "
                "--model REF --weights FILE --dataset NAME, not both"
            )
        return False
    if not args.model or not args.weights:
        missing = "--weights FILE" if args.model else "--model REF"
        raise ExternalArgsError(
            f"give a run folder (advkit eval RUN), or a model advkit did not train with --model "
            f"REF --weights FILE --dataset NAME ({missing} is missing)"
        )
    if not args.dataset:
        raise ExternalArgsError(
            "--dataset NAME is needed with --model/--weights: the test data to evaluate on "
            "(advkit datasets lists them)"
        )
    if args.eps is None:
        raise ExternalArgsError(
            "--eps is needed with --model/--weights (there is no training eps to default to), "
            "e.g. --eps 8/255"
        )
    return True


def output_folder(args: argparse.Namespace) -> Path:
    """``--out``, else ``<weights folder>/<weights stem>-eval``."""
    if args.out:
        return Path(args.out)
    weights = Path(args.weights)
    return weights.with_name(f"{weights.stem}-eval")


def origin_fingerprint(origin: dict[str, Any]) -> str:
    """16 hex digits telling external models apart: the weights' bytes, the reference, its
    arguments and the normalization (not where the file lies)."""
    what = {key: origin.get(key) for key in ("weights_sha256", "reference", "model_kwargs",
                                             "normalization")}  # fmt: skip
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def load(args: argparse.Namespace, device: Any) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """(model on ``device``, test split, metadata for the report, origin for the JSON)."""
    from advkit.data import DATASETS, get_spec, load_dataset
    from advkit.evaluation.external import load_external

    if args.dataset not in DATASETS.names():
        raise ExternalArgsError(
            f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASETS.names())}"
        )
    splits = load_dataset(args.dataset, args.data_dir, val_size=0, for_training=False)
    known = get_spec(args.dataset).num_classes is not None or splits.class_names is not None
    mean = [parse_eps(value) for value in args.mean] if args.mean else None
    std = [parse_eps(value) for value in args.std] if args.std else None
    model_args = parse_model_args(args.model_args) if args.model_args else {}
    model, origin = load_external(
        args.model, args.weights, num_classes=splits.num_classes,
        input_shape=tuple(splits.test.images.shape[1:]), mean=mean, std=std,
        model_args=model_args, exact_classes=known,
    )  # fmt: skip
    origin["dataset"] = args.dataset
    meta = {
        "architecture": args.model, "model_kwargs": model_args, "dataset": args.dataset,
        "data_dir": args.data_dir, "num_classes": splits.num_classes,
        "class_names": splits.class_names, "model_origin": origin,
    }  # fmt: skip
    return model.to(device), splits, meta, origin
