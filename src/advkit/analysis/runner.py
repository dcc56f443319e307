"""Run analyses on trained runs: ``advkit analyze``'s library side (writing: ``report``).

:func:`load_run` builds the :class:`~advkit.analysis.base.AnalysisContext` of a run folder (its
model, a fixed seeded sample of test points, its history, a rebuilder of its architecture);
:func:`parse_sets` reads ``--set ANALYSIS.KEY=VALUE`` options; :func:`run_analyses` runs the
selected analyses (one that needs what the run lacks is skipped with the reason).
:mod:`advkit.analysis.report` then writes the results into the run folder, and several runs side
by side into another.

    run = load_run("runs/pgd", examples=256, seed=0)
    outcomes = run_analyses(run.context, select(["loss_landscape"]))
    write_run(run.folder, run, outcomes)
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from advkit import progress_display, runs
from advkit.analysis.base import ANALYSES, AnalysisContext, AnalysisResult, AnalysisSkipped
from advkit.config_values import ConfigError, coerce_value
from advkit.errors import CorruptFileError
from advkit.evaluation.outputs import weights_fingerprint

#: Test points analysed by default: the whole default ``advkit analyze`` of a Fashion-MNIST
#: cnn-small run stays within a minute on 2 CPU cores.
DEFAULT_EXAMPLES = 256
#: Images per forward pass by default.
DEFAULT_BATCH_SIZE = 512


@dataclass
class LoadedRun:
    """A run ready for analysis: its context and what its outputs record about it."""

    context: AnalysisContext
    folder: Path
    label: str
    dataset: str
    test_points: int
    model: str  # the weights' fingerprint
    run_threat: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """One analysis on one run: its result, or why it was skipped; its options and time."""

    name: str
    result: AnalysisResult | None
    skipped: str | None
    options: dict[str, Any]
    seconds: float


# --- options ---------------------------------------------------------------------------------


def select(only: Sequence[str] | None) -> list[str]:
    """The analyses to run, in registry order: ``only`` (checked), else all registered."""
    if not only:
        return ANALYSES.names()
    for name in only:
        ANALYSES.get(name)  # a clear error naming the choices
    return [name for name in ANALYSES.names() if name in set(only)]


def parse_sets(texts: Sequence[str], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["loss_landscape.grid=21", ...]`` -> ``{"loss_landscape": {"grid": 21}}``.

    An analysis that declares its options (``options=`` metadata) gets each value converted to
    its default's type, and refuses keys it does not have; others get the value as YAML reads a
    scalar. A ``--set`` for an analysis that is not run is refused (a typo, or a wrong --only)."""
    sets: dict[str, dict[str, Any]] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        analysis, dot, option = key.strip().partition(".")
        if not sep or not dot or not analysis or not option:
            raise ConfigError(
                f"--set takes ANALYSIS.KEY=VALUE, e.g. loss_landscape.grid=21; got {text!r}"
            )
        if analysis not in ANALYSES:
            raise ConfigError(
                f"--set {key}: no analysis {analysis!r}; choose one of "
                f"{', '.join(ANALYSES.names())}"
            )
        if analysis not in names:
            raise ConfigError(f"--set {key}: {analysis} is not among the analyses run (--only)")
        declared = ANALYSES.meta(analysis).get("options")
        if declared is None:
            value = yaml_scalar(raw.strip())
        elif option not in declared:
            takes = ", ".join(f"{k} (default {v})" for k, v in declared.items()) or "none"
            raise ConfigError(f"--set {key}: {analysis} has no option {option!r}; it takes {takes}")
        else:
            value = coerce_value(f"--set {key}", type(declared[option]), raw.strip())
        sets.setdefault(analysis, {})[option] = value
    return sets


def yaml_scalar(text: str) -> Any:
    """``28`` an int, ``0.3`` a float, ``true`` a bool, anything else the string itself."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return loaded if isinstance(loaded, str | int | float | bool) else text


def resolved_options(name: str, sets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """An analysis's options as it runs with them: its declared defaults, then ``--set``."""
    return {**(ANALYSES.meta(name).get("options") or {}), **sets.get(name, {})}


def overrides(sets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{"analysis.key": value}`` for the ``--set`` values that differ from the defaults: what
    makes these results other than the default ones."""
    changed = {}
    for name, values in sets.items():
        declared = ANALYSES.meta(name).get("options") or {}
        for key, value in values.items():
            if key not in declared or declared[key] != value:
                changed[f"{name}.{key}"] = value
    return dict(sorted(changed.items()))


# --- loading ---------------------------------------------------------------------------------


def run_folder(path: str | Path) -> Path:
    """The folder of a run (a run folder, the run of one of its checkpoints, or the folder of a
    ``.safetensors`` model file); RunError unless it holds a model."""
    runs.model_paths(path)
    checkpoint = runs.model_checkpoint(path)
    if checkpoint is not None:
        return checkpoint.run
    path = Path(path)
    return path if path.is_dir() else path.parent


def load_history(folder: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records, one per epoch (empty when it has none)."""
    path = folder / runs.METRICS_FILE
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise CorruptFileError(
                f"{path} line {number} is not a JSON record: {runs.repair_hint(path)}"
            )
        records.append(record)
    return records


def sample_indices(total: int, examples: int, seed: int) -> torch.Tensor:
    """``examples`` distinct test indices drawn by ``seed`` (all of them if fewer): the fixed
    sample every analysis of the run sees."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=generator)[: min(examples, total)]


#: Mixed into the analysis seed for fresh initializations (see :func:`rebuilder`).
FRESH_INIT_KEY = 0x5EED_F2E5


def rebuilder(
    meta: Mapping[str, Any], device: torch.device, seed: int
) -> Callable[[], nn.Module] | None:
    """A function building a fresh, untrained model of the run's architecture (initialized from
    ``seed``, the global RNG untouched), or None for a model advkit cannot build by name.

    The initialization is drawn from a seed mixed out of ``seed`` (never ``seed`` itself):
    training seeds torch with its own seed before building the model, so with equal seeds a
    "fresh" copy would be the run's own initial weights, and re-randomization would silently
    measure re-initialization."""
    from advkit.models import MODELS, create_model
    from advkit.models.exported import is_in_process

    name = meta["architecture"]
    if is_in_process(name) or name not in MODELS:
        return None

    fresh_seed = int(np.random.SeedSequence((seed, FRESH_INIT_KEY)).generate_state(1)[0])

    def rebuild() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(fresh_seed)
            model = create_model(
                name, num_classes=meta["num_classes"], mean=meta["mean"], std=meta["std"],
                **meta.get("model_kwargs", {}),
            )  # fmt: skip
        return model.to(device).eval()

    return rebuild


def load_run(
    path: str | Path,
    *,
    examples: int = DEFAULT_EXAMPLES,
    seed: int = 0,
    device: str | torch.device = "cpu",
    eps: str | None = None,
    norm: str | None = None,
    dataset: str | None = None,
    data_dir: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    label: str | None = None,
) -> LoadedRun:
    """The analysis context of a run folder: its model on ``device`` (eval mode), ``examples``
    test points drawn by ``seed`` from its test data (or ``dataset``/``data_dir``), its threat
    model (or ``eps``/``norm``), its history and a rebuilder of its architecture."""
    if examples < 1 or batch_size < 1:
        raise ConfigError("--examples and --batch-size must be at least 1 (counts of images)")
    folder = run_folder(path)
    meta = runs.load_metadata(path)
    value, norm_name = runs.threat_of(meta, eps, norm, purpose="analyse")
    device = torch.device(device)
    model = runs.load_model(path, device)
    splits = runs.load_test_data(meta, dataset=dataset, data_dir=data_dir)
    indices = sample_indices(len(splits.test), examples, seed)
    test = splits.test.take(indices)
    context = AnalysisContext(
        model=model, inputs=test.inputs(slice(None)).to(device), labels=test.labels.to(device),
        eps=value, norm=norm_name, num_classes=int(meta["num_classes"]),
        class_names=splits.class_names or meta.get("class_names"), history=load_history(folder),
        meta=dict(meta), run_dir=folder, seed=seed, rebuild=rebuilder(meta, device, seed),
        batch_size=batch_size,
    )  # fmt: skip
    return LoadedRun(
        context=context, folder=folder, label=label or folder.resolve().name,
        dataset=splits.dataset, test_points=len(splits.test),
        model=weights_fingerprint(runs.model_paths(path)[0]), run_threat=meta.get("threat") or {},
    )  # fmt: skip


# --- running ---------------------------------------------------------------------------------


def run_analyses(
    ctx: AnalysisContext,
    names: Sequence[str],
    sets: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    on_done: Callable[[Outcome], None] | None = None,
    quiet: bool = False,
) -> list[Outcome]:
    """Run each analysis in ``names`` on ``ctx`` with its options; an analysis that needs what
    the context lacks (history, a rebuildable architecture), or raises AnalysisSkipped, is
    skipped with the reason. ``on_done`` hears of each as it ends. Each shows a bar on stderr
    (which analysis, and how far where it counts its work), none if ``quiet``."""
    sets = sets or {}
    outcomes = []
    for number, name in enumerate(names, start=1):
        options = resolved_options(name, sets)
        started = time.perf_counter()
        result, skipped = None, _missing(name, ctx)
        if skipped is None:
            desc = f"analysis {number}/{len(names)} {name}"
            try:
                with progress_display.task(desc, quiet=quiet):
                    result = ANALYSES.get(name)(replace(ctx, options=dict(options)))
            except AnalysisSkipped as why:
                skipped = str(why) or "the analysis could not run on this model"
        outcome = Outcome(name, result, skipped, options, time.perf_counter() - started)
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes


def _missing(name: str, ctx: AnalysisContext) -> str | None:
    meta = ANALYSES.meta(name)
    if meta.get("needs_history") and not ctx.history:
        return "needs the run's training history (metrics.jsonl), which this model has none of"
    if meta.get("needs_rebuild") and ctx.rebuild is None:
        architecture = ctx.meta.get("architecture", "this model")
        return (
            f"needs a fresh model of the same architecture, and {architecture} cannot be built "
            "by name"
        )
    return None


def headline(name: str, summary: Mapping[str, Any], limit: int = 4) -> str:
    """A few numbers of a summary for one line of output: the ``headline`` keys its analysis
    declares (dotted paths), else its first numbers."""
    keys = ANALYSES.meta(name).get("headline") if name in ANALYSES else None
    leaves = scalar_leaves(summary)
    if keys:  # in the declared order
        leaves = {
            leaf: value for k in keys for leaf, value in leaves.items()
            if leaf == k or leaf.startswith(f"{k}.")
        }  # fmt: skip
    parts = [f"{key} {value:.4g}" for key, value in list(leaves.items())[:limit]]
    return ", ".join(parts)


def scalar_leaves(value: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a nested summary by dotted path (lists and strings left out)."""
    if isinstance(value, Mapping):
        leaves = {}
        for key, item in value.items():
            leaves.update(scalar_leaves(item, f"{prefix}{key}."))
        return leaves
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {prefix.rstrip("."): value}
    return {}
