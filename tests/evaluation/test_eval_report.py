"""The JSON summary, the terminal table, the Markdown report and the PNG figures."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from advkit.evaluation import attack_examples, build_suite, evaluate, report_dict, write_json
from advkit.evaluation.plots import plot_examples, plot_sweep
from advkit.evaluation.report import format_eps, format_table, markdown_report, write_markdown

EPS = 0.02
PAPER_KEYS = ["clean", "fgsm", "pgd20", "pgd100", "cw100", "pgd20x10", "worst_case"]


@pytest.fixture
def paper(model, data):
    return evaluate(model, *data, "paper", eps=EPS, batch_size=16)


def test_json_keys_and_ranges(paper, tmp_path):
    data = report_dict(paper, ["a warning"], sweep=[(0.0, 0.85), (0.02, 0.35)])
    path = write_json(tmp_path / "out" / "eval-paper.json", data)
    loaded = json.loads(path.read_text())
    assert loaded == data
    for key in PAPER_KEYS:
        assert 0 <= loaded[key] <= loaded["clean"] <= 1
    assert loaded["worst_case"] == min(loaded[key] for key in PAPER_KEYS)
    assert loaded["suite"] == "paper" and loaded["norm"] == "linf" and loaded["eps"] == EPS
    assert loaded["n_examples"] == 40 and loaded["seconds"] > 0
    assert loaded["warnings"] == ["a warning"]
    assert loaded["attacks"] == PAPER_KEYS[1:-1]
    point = loaded["sweep"][1]
    assert point["eps"] == 0.02 and point["robust_accuracy"] == 0.35
    assert point["interval"][0] <= 0.35 <= point["interval"][1]


def test_table_and_markdown(paper, tmp_path):
    data = report_dict(paper, ["masked gradients"])
    table = format_table(data)
    for key in PAPER_KEYS:
        assert key in table
    assert "warning: masked gradients" in table and "suite paper" in table
    descriptions = {
        entry.name: entry.description
        for entry in build_suite("paper", eps=EPS, norm="linf").attacks
    }
    text = markdown_report(
        data,
        title="run",
        descriptions=descriptions,
        metadata={"architecture": "cnn-small", "threat": {"norm": "linf", "eps": 8 / 255}},
        images={"Examples": "grid.png"},
    )
    path = write_markdown(tmp_path / "report-paper.md", text)
    written = path.read_text()
    assert "| cw100 | PGD-100, cw loss |" in written
    assert "**worst case**" in written and "masked gradients" in written
    assert "cnn-small" in written and "8/255" in written and "![Examples](grid.png)" in written


def test_format_eps():
    assert format_eps(8 / 255) == "0.03137 (8/255)"
    assert format_eps(0.1) == "0.1"


def test_figures(model, data, tmp_path):
    suite = build_suite("quick", eps=EPS, norm="linf")
    examples = attack_examples(model, *data, suite, count=5)
    assert examples.attack == "pgd20" and len(examples.clean) == 5
    assert torch.equal(examples.clean_predictions, examples.labels)
    assert (examples.adversarial - examples.clean).abs().max() <= EPS + 1e-6
    grid = plot_examples(
        tmp_path / "grid.png",
        examples.clean,
        examples.adversarial,
        examples.labels,
        examples.clean_predictions,
        examples.adversarial_predictions,
        class_names=list("abcde"),
    )
    sweep = plot_sweep(tmp_path / "sweep.png", [(0, 0.9), (0.05, 0.4), (0.1, 0.1)], norm="linf")
    for path in (grid, sweep):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 100
    rgb = torch.rand(3, 3, 8, 8)
    plot_examples(
        tmp_path / "rgb.png", rgb, rgb.flip(0), torch.zeros(3), torch.zeros(3), torch.ones(3)
    )
    assert (tmp_path / "rgb.png").stat().st_size > 0
