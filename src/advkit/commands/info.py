"""``advkit models`` and ``advkit datasets``: what the registries hold."""

from __future__ import annotations

import argparse

from advkit.data import DATASETS
from advkit.methods import METHODS
from advkit.models import list_models


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    models = subparsers.add_parser("models", help="list model architectures")
    models.set_defaults(handler=run_models)
    datasets = subparsers.add_parser("datasets", help="list datasets and where they are read from")
    datasets.set_defaults(handler=run_datasets)
    methods = subparsers.add_parser("methods", help="list training methods")
    methods.set_defaults(handler=run_methods)


def run_models(args: argparse.Namespace) -> int:
    del args
    for name, description in list_models():
        print(f"{name:<18} {description}")
    return 0


def run_datasets(args: argparse.Namespace) -> int:
    del args
    for name in DATASETS.names():
        spec = DATASETS.get(name)
        where = spec.default_dir or "--data-dir"
        print(f"{name:<14} default: {where}\n{'':<14} {spec.how_to_get}")
    return 0


def run_methods(args: argparse.Namespace) -> int:
    del args
    for name in METHODS.names():
        doc = (METHODS.get(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:<10} {doc}")
    return 0
