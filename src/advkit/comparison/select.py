"""Which evaluation of a run a comparison shows, and what the run folder says of its model.

A RUN is a run folder (its ``eval-*.json`` files, written by ``advkit eval``), a folder that
``advkit eval --out`` wrote, or one evaluation JSON. Its evaluations are narrowed by what the user
asked (suite, norm, eps, example count); with no eps or norm asked, those at the run's own
training threat come first, as ``advkit eval`` evaluates there by default. Of one suite at one
threat, an evaluation of the weights the run holds now comes first, then the largest (the one
``advkit eval`` names ``eval-<suite>.json``). Several suites or threats left over are ambiguous:
the user chooses, and the error lists what there is.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advkit.errors import UserError, reading
from advkit.evaluation.provenance import file_sha256
from advkit.evaluation.report import NORM_NAMES
from advkit.humanize import format_eps
from advkit.runs import META_FILE, MODEL_FILE, repair_hint

#: The evaluation files of a folder (``.state.pt`` progress files do not match).
EVAL_GLOB = "eval-*.json"
#: Keys every evaluation JSON that ``advkit eval`` writes has.
REQUIRED_KEYS = ("suite", "norm", "eps", "n_examples", "attacks", "clean", "worst_case")


class CompareError(UserError, ValueError):
    """Runs or options that do not make one comparison table."""


class MissingEvaluationError(CompareError):
    """A run with no evaluation that fits what was asked (``skip_missing`` lists it instead)."""


@dataclass(frozen=True)
class Selection:
    """What the user asked for; None leaves it to the run's evaluations."""

    suite: str | None = None
    eps: float | None = None
    norm: str | None = None
    n_examples: int | None = None

    def eval_options(self) -> str:
        """The ``advkit eval`` options that produce such an evaluation."""
        parts = [f"--suite {self.suite}"] if self.suite else []
        if self.eps is not None:
            parts.append(f"--eps {self.eps:g}")
        if self.norm:
            parts.append(f"--norm {self.norm}")
        if self.n_examples is not None:
            parts.append(f"--n-examples {self.n_examples}")
        return " ".join(parts)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation JSON and its contents."""

    path: Path
    data: Mapping[str, Any]

    @property
    def suite(self) -> str:
        return str(self.data["suite"])

    @property
    def norm(self) -> str:
        return str(self.data["norm"])

    @property
    def eps(self) -> float:
        return float(self.data["eps"])

    @property
    def n_examples(self) -> int:
        return int(self.data["n_examples"])

    def threat_text(self) -> str:
        """``L-inf eps=0.1``."""
        return f"{NORM_NAMES.get(self.norm, self.norm)} eps={format_eps(self.eps)}"

    def describe(self) -> str:
        """``quick L-inf eps=0.1, 200 examples (eval-quick.json)``."""
        return f"{self.suite} {self.threat_text()}, {self.n_examples} examples ({self.path.name})"


@dataclass(frozen=True)
class RunInfo:
    """What a run folder's model.json says of the model (None where it does not say)."""

    path: Path
    #: The run's name: its folder's, or an evaluation JSON's stem outside a run folder.
    name: str
    #: What the name is of (the folder, or the JSON), to tell runs of one name apart.
    named: Path
    method: str | None = None
    train_threat: tuple[str, float] | None = None
    architecture: str | None = None
    dataset: str | None = None
    #: SHA-256 of the run's weights file now, to tell evaluations of other weights.
    weights: str | None = None
    #: Whether it is a run folder (with model.json), which `advkit eval RUN` evaluates.
    is_run: bool = False


def read_run(path: str | Path) -> tuple[RunInfo, list[Evaluation]]:
    """The run's facts and its evaluations (none: an empty list)."""
    path = Path(path)
    if path.is_dir():
        folder, files = path, sorted(path.glob(EVAL_GLOB))
    elif path.is_file() and path.suffix == ".json":
        folder, files = path.parent, [path]
    elif path.exists():
        raise CompareError(
            f"{path} is neither a run folder nor an evaluation JSON: give the run folder (or the "
            "eval-*.json that `advkit eval` wrote)"
        )
    else:
        raise CompareError(f"{path} does not exist: give a run folder or an evaluation JSON")
    if not files and not (folder / META_FILE).is_file():
        raise CompareError(
            f"{path} is not a run folder (no {META_FILE}) and holds no evaluation (eval-*.json): "
            "give a run folder, the folder `advkit eval --out` wrote, or an evaluation JSON"
        )
    evaluations = [Evaluation(file, read_evaluation(file)) for file in files]
    return _run_info(path, folder), evaluations


def read_evaluation(path: Path) -> Mapping[str, Any]:
    """An evaluation JSON's dict; a one-line error for a file that is not one."""
    with reading(path, repair_hint(path)):
        data = json.loads(path.read_bytes().decode("utf-8"))
    missing = [key for key in REQUIRED_KEYS if not isinstance(data, dict) or key not in data]
    if missing:
        raise CompareError(
            f"{path} is not an evaluation written by `advkit eval` (it lacks "
            f"{', '.join(missing)}): move it out of the way or evaluate again"
        )
    return data


def choose(
    run: RunInfo, evaluations: Sequence[Evaluation], selection: Selection, given: str
) -> Evaluation:
    """The one evaluation of ``run`` the selection means (``given``: the path as the user wrote
    it, for the messages)."""
    if not evaluations:
        raise MissingEvaluationError(
            f"{given} has no evaluation: {_to_run(run, given, selection)} first (or pass "
            "--skip-missing to list it as missing)"
        )
    fitting = [e for e in evaluations if _fits(e, selection)]
    if not fitting:
        raise MissingEvaluationError(
            f"{given} has no evaluation with {_asked(selection)} (it has "
            f"{'; '.join(e.describe() for e in evaluations)}): {_to_run(run, given, selection)}, "
            "choose another with --suite/--eps/--norm/--n-examples, or pass --skip-missing to "
            "list it as missing"
        )
    if (selection.eps is None or selection.norm is None) and run.train_threat is not None:
        own = [e for e in fitting if _at_threat(e, *run.train_threat, selection)]
        fitting = own or fitting
    groups: dict[tuple[str, str, float], list[Evaluation]] = {}
    for evaluation in fitting:
        groups.setdefault((evaluation.suite, evaluation.norm, evaluation.eps), []).append(
            evaluation
        )
    if len(groups) > 1:
        keys = list(groups)
        options = [
            option
            for option, index in (("--suite", 0), ("--norm", 1), ("--eps", 2))
            if len({key[index] for key in keys}) > 1
        ]
        raise CompareError(
            f"{given} has several evaluations: {'; '.join(e.describe() for e in fitting)}; "
            f"choose one with {' and '.join(options)}"
        )
    return min(next(iter(groups.values())), key=lambda e: _preference(e, run))


def missing_reason(run: RunInfo, given: str, selection: Selection) -> str:
    """What a run without a fitting evaluation needs: ``no evaluation with suite paper; run
    `advkit eval runs/a --suite paper` first``."""
    asked = f" with {_asked(selection)}" if _asked(selection) else ""
    return f"no evaluation{asked}; {_to_run(run, given, selection)} first"


def _to_run(run: RunInfo, given: str, selection: Selection) -> str:
    """``run `advkit eval runs/a --suite paper```: the command that makes what is missing (for a
    folder ``advkit eval --out`` wrote, the model's own options go where the ``...`` is)."""
    path = Path(given)
    folder = given if path.is_dir() else str(path.parent)
    if run.is_run:
        return f"run `advkit eval {_quoted(folder)}{_options(selection)}`"
    return f"run `advkit eval ...{_options(selection)} --out {_quoted(folder)}`"


def _fits(evaluation: Evaluation, selection: Selection) -> bool:
    if selection.suite is not None and evaluation.suite != selection.suite:
        return False
    if selection.norm is not None and evaluation.norm != selection.norm:
        return False
    if selection.eps is not None and not _same_eps(evaluation.eps, selection.eps):
        return False
    return selection.n_examples is None or evaluation.n_examples == selection.n_examples


def _at_threat(evaluation: Evaluation, norm: str, eps: float, selection: Selection) -> bool:
    """At the run's own threat in what the user left open."""
    if selection.norm is None and evaluation.norm != norm:
        return False
    return selection.eps is not None or _same_eps(evaluation.eps, eps)


def _same_eps(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def _preference(evaluation: Evaluation, run: RunInfo) -> tuple[bool, int, int, str]:
    """Sort key, smallest first: the run's weights now, most examples, the main file name."""
    other_weights = run.weights is not None and not of_weights(evaluation, run.weights)
    name = evaluation.path.name
    return other_weights, -evaluation.n_examples, len(name), name


def of_weights(evaluation: Evaluation, weights: str) -> bool:
    """Whether the evaluation is of the weights whose SHA-256 is ``weights`` (True when the
    evaluation does not record its weights: nothing says otherwise)."""
    full = evaluation.data.get("weights_sha256")
    short = evaluation.data.get("model")
    if isinstance(full, str):
        return full == weights
    return not isinstance(short, str) or weights.startswith(short)


def _asked(selection: Selection) -> str:
    parts = [f"suite {selection.suite}"] if selection.suite else []
    if selection.norm:
        parts.append(f"norm {selection.norm}")
    if selection.eps is not None:
        parts.append(f"eps {format_eps(selection.eps)}")
    if selection.n_examples is not None:
        parts.append(f"{selection.n_examples} examples")
    return ", ".join(parts)


def _options(selection: Selection) -> str:
    options = selection.eval_options()
    return f" {options}" if options else ""


def _quoted(text: str) -> str:
    return shlex.quote(text)


def _run_info(given: Path, folder: Path) -> RunInfo:
    """The run's facts from model.json when the folder is a run folder."""
    meta_path = folder / META_FILE
    named = folder if given.is_dir() or meta_path.is_file() else given
    name = named.resolve().stem if named is given else named.resolve().name
    if not meta_path.is_file():
        return RunInfo(given, name, named)
    with reading(meta_path, repair_hint(meta_path)):
        meta = json.loads(meta_path.read_bytes().decode("utf-8"))
    if not isinstance(meta, dict):
        raise CompareError(f"{meta_path} must hold a JSON object: {repair_hint(meta_path)}")
    method = meta.get("method")
    threat = meta.get("threat")
    weights = folder / MODEL_FILE
    return RunInfo(
        given, name, named,
        method=str(method.get("name")) if isinstance(method, Mapping) else _text(method),
        train_threat=_threat(threat),
        architecture=architecture_text(meta.get("architecture"), meta.get("model_kwargs")),
        dataset=_text(meta.get("dataset")),
        weights=file_sha256(weights) if weights.is_file() else None, is_run=True,
    )  # fmt: skip


def architecture_text(architecture: Any, kwargs: Any = None) -> str | None:
    """``wrn (depth=16, widen_factor=4)``: the architecture with the options that shape it."""
    if architecture is None:
        return None
    if isinstance(kwargs, Mapping) and kwargs:
        return f"{architecture} ({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
    return str(architecture)


def _threat(threat: Any) -> tuple[str, float] | None:
    if not isinstance(threat, Mapping) or threat.get("eps") is None:
        return None
    try:
        return str(threat.get("norm") or "linf"), float(threat["eps"])
    except (TypeError, ValueError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
