"""The attack benchmark says why a competitor is left out and how to bring it in."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def load_benchmark():
    spec = importlib.util.spec_from_file_location(
        "bench_attacks", ROOT / "benchmarks" / "bench_attacks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_competitor_that_does_not_import_is_skipped_with_the_reason(monkeypatch, capsys):
    bench = load_benchmark()
    # As after `pip install --no-deps torchattacks` without scipy: the import itself fails.
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    monkeypatch.setitem(sys.modules, "art", None)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    runners = bench.runners(model, (1, 2, 2), eps=0.1, alpha=0.05, steps=1, batch=2)
    assert list(runners) == ["advkit"]
    out = capsys.readouterr().out
    for name, module in [
        ("torchattacks", "torchattacks"),
        ("adversarial-robustness-toolbox", "art"),
    ]:
        line = next(line for line in out.splitlines() if line.startswith(f"{name} skipped: "))
        assert module in line  # the ImportError's own message
        assert bench.INSTALL in line


def test_the_install_command_names_the_bench_extra_and_it_lists_what_they_import():
    bench = load_benchmark()
    assert "'.[bench]'" in bench.INSTALL and "--no-deps torchattacks" in bench.INSTALL
    pyproject = (ROOT / "pyproject.toml").read_text()  # tomllib is Python 3.11+
    extra = ast.literal_eval(re.search(r"^bench = (\[.*\])$", pyproject, re.MULTILINE)[1])
    names = {re.split(r"[<>=~!]", requirement)[0] for requirement in extra}
    assert {"scipy", "scikit-learn", "six"} <= names  # torchattacks: scipy; ART: all three
    assert bench.INSTALL in (ROOT / "README.md").read_text().replace(".venv/bin/", "")
