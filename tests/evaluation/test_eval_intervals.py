"""Confidence intervals and the record of what an evaluation measured."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import advkit
from advkit.cli import main
from advkit.evaluation import build_suite, evaluate, report_dict
from advkit.evaluation.intervals import accuracy_intervals, wilson_interval
from advkit.evaluation.provenance import state_sha256
from advkit.evaluation.report import markdown_report
from advkit.evaluation.suites import attack_params
from advkit.models import create_model
from tests.evaluation.run_folder import make_run


@pytest.mark.parametrize("successes", [0, 1, 37, 50, 99, 100])
def test_wilson_interval_contains_the_estimate_within_unit_range(successes):
    low, high = wilson_interval(successes, 100)
    assert 0.0 <= low <= successes / 100 <= high <= 1.0
    assert (low == 0.0) == (successes == 0) and (high == 1.0) == (successes == 100)


def test_wilson_interval_known_value_and_shrinks_with_n():
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    widths = [np.subtract(*wilson_interval(8 * n // 10, n)[::-1]) for n in (50, 500, 5000)]
    assert widths[0] > widths[1] > widths[2] > 0
    wider = wilson_interval(80, 100, confidence=0.99)
    assert wider[0] < wilson_interval(80, 100)[0] and wider[1] > wilson_interval(80, 100)[1]


def test_wilson_interval_covers_near_its_level():
    rng = np.random.default_rng(0)
    n, p, trials = 200, 0.9, 4000
    hits = rng.binomial(n, p, trials)
    covered = [low <= p <= high for low, high in (wilson_interval(int(k), n) for k in hits)]
    assert 0.93 <= np.mean(covered) <= 0.97


def test_interval_inputs_are_checked():
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=95)
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(3, 2)
    assert accuracy_intervals({"clean": 0.5}, 0) == {"clean": [0.0, 1.0]}


def _result():
    torch.manual_seed(0)
    model = create_model("cnn-small", num_classes=10, mean=(0.5,), std=(0.25,)).eval()
    images = torch.rand(20, 1, 28, 28)
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[:5] = (labels[:5] + 1) % 10  # a few wrong: clean accuracy 0.75
    suite = build_suite("quick", eps=0.05, norm="linf")
    return evaluate(model, images, labels, suite, eps=0.05), suite, model


def test_report_dict_records_intervals_params_and_per_sample_outcomes():
    result, suite, _ = _result()
    data = report_dict(result, suite=suite, per_sample=True)
    assert data["confidence"] == 0.95 and data["interval_method"] == "wilson"
    for column in ("clean", "pgd20", "worst_case"):
        low, high = data["intervals"][column]
        assert low <= data[column] <= high
        assert sum(data["per_sample"][column]) == round(data[column] * 20)
    assert data["clean"] == 0.75
    assert data["attack_params"]["pgd20"] == attack_params(suite)["pgd20"]
    assert data["attack_params"]["pgd20"]["steps"] == 20
    assert "per_sample" not in report_dict(result, suite=suite)
    text = markdown_report(data, title="t")
    assert "95% interval" in text and "Wilson score intervals" in text
    assert "## Attack settings" in text


def test_state_hash_tells_weights_apart():
    _, _, model = _result()
    before = state_sha256(model)
    with torch.no_grad():
        next(model.parameters())[0].view(-1)[0] += 1e-6
    assert state_sha256(model) != before


def test_eval_json_says_exactly_what_was_measured(tmp_path):
    run = make_run(tmp_path)
    assert main(["eval", str(run), "--n-examples", "12", "--quiet", "--checks", "none",
                 "--per-sample", "--confidence", "0.9"]) == 0  # fmt: skip
    data = json.loads((run / "eval-quick.json").read_text())
    sha = hashlib.sha256((run / "model.safetensors").read_bytes()).hexdigest()
    assert data["weights_sha256"] == sha and data["model"] == sha[:16]
    assert data["architecture"] == "cnn-small" and data["indices"] == list(range(12))
    assert data["advkit_version"] and data["torch_version"] == torch.__version__
    assert data["confidence"] == 0.9 and set(data["intervals"]) == {"clean", "pgd20", "worst_case"}
    assert data["attack_params"]["pgd20"]["function"] == "pgd"
    assert len(data["per_sample"]["pgd20"]) == 12
    report = (run / "eval-quick.md").read_text()
    assert "90% interval" in report and sha in report and "indices 0..11" in report


def test_bad_confidence_is_a_one_line_error(tmp_path, capsys):
    run = make_run(tmp_path)
    assert main(["eval", str(run), "--quiet", "--confidence", "95"]) == 2
    err = capsys.readouterr().err
    assert "--confidence must be in (0, 1)" in err and "Traceback" not in err


def test_python_evaluate_records_the_same_provenance():
    torch.manual_seed(0)
    model = create_model("cnn-small", num_classes=10, mean=(0.5,), std=(0.25,)).eval()
    images = torch.rand(12, 1, 28, 28)
    with torch.no_grad():
        labels = model(images).argmax(1)
    data = advkit.evaluate(model, (images, labels), eps=0.05, checks="none").to_dict()
    assert data["weights_sha256"] == state_sha256(model) and data["indices"] == list(range(12))
    assert data["torch_version"] == torch.__version__ and "pgd20" in data["attack_params"]
    assert data["intervals"]["clean"] == [0.7575, 1.0]  # Wilson at 12 of 12
