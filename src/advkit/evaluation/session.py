"""One evaluation as ``advkit eval`` makes it: the attacks, the eps sweep, the sanity checks, and
the report written where no other evaluation is replaced.

``advkit eval`` (of a run folder or of a model advkit did not train) and ``advkit.evaluate``
both go through :func:`run_evaluation`, so the same model on the same images gives the same
:class:`Evaluation`, and :meth:`Evaluation.write` the same JSON, Markdown and figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advkit.distributed import World
from advkit.errors import WriteError
from advkit.evaluation.checks import (
    CheckContext,
    CheckReport,
    check_all,
    check_sample_size,
    fast_budget,
)
from advkit.evaluation.cost import count_forwards
from advkit.evaluation.evaluate import EvalResult, ProgressFn, evaluate
from advkit.evaluation.examples import attack_examples
from advkit.evaluation.intervals import DEFAULT_CONFIDENCE
from advkit.evaluation.outputs import Identity, Placement, place_at_file, place_in_folder
from advkit.evaluation.plots import examples_png, sweep_png
from advkit.evaluation.provenance import model_arguments, provenance
from advkit.evaluation.report import markdown_report, report_dict, write_json, write_markdown
from advkit.evaluation.suites import Suite
from advkit.evaluation.sweep import eps_sweep
from advkit.files import write_bytes

#: ``bar(description, unit)``: a context giving the progress callback of one phase (or None).
BarFactory = Callable[[str, str], AbstractContextManager[ProgressFn | None]]
#: Test images shown in the example grid.
GRID_EXAMPLES = 8


def no_bar(description: str, unit: str) -> AbstractContextManager[ProgressFn | None]:
    return nullcontext(None)


@dataclass
class Evaluation:
    """The outcome of one evaluation: per-sample results, sweep, checks and their costs.

    ``extra`` holds what the JSON records beside the accuracies (batch size, the weights'
    fingerprint under ``"model"``, the attacks' cost, workers, where the model came from).
    """

    result: EvalResult
    checks: CheckReport
    sweep: list[tuple[float, float]] | None
    suite: Suite
    extra: dict[str, Any]
    timing: dict[str, float]
    model: nn.Module = field(repr=False)
    test: Any = field(repr=False)
    started: float = field(default_factory=time.perf_counter, repr=False)
    #: What the report says of the model: its title, facts (model.json's keys), class names, and
    #: the threat it was trained at (the main output name is the suite's alone at it).
    title: str = "model"
    metadata: Mapping[str, Any] | None = None
    class_names: list[str] | None = None
    run_threat: Mapping[str, Any] | None = None
    #: The level of the accuracies' intervals, and whether the JSON lists per-sample outcomes.
    confidence: float = DEFAULT_CONFIDENCE
    per_sample: bool = False
    #: The attacks' saved progress, kept until :meth:`write` has written the JSON (a full disk
    #: then loses nothing: the evaluation run again resumes from it).
    state_path: Path | None = None
    #: The figures drawn by :meth:`finish`: (Outputs field, caption, PNG bytes).
    _figures: list[tuple[str, str, bytes]] | None = field(default=None, init=False, repr=False)

    def accuracies(self) -> dict[str, float]:
        """{"clean": ..., <attack>: ..., "worst_case": ...}: fractions of the evaluated images."""
        return self.result.accuracies()

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``advkit eval`` writes (see :mod:`advkit.evaluation.report`)."""
        timing = {key: round(value, 3) for key, value in self.timing.items()}
        return report_dict(
            self.result, sweep=self.sweep, checks=self.checks, suite=self.suite,
            confidence=self.confidence, per_sample=self.per_sample, class_names=self.class_names,
            extra={**self.extra, "timing": timing},
        )  # fmt: skip

    def identity(self) -> Identity:
        """What tells this evaluation apart from another (its output names follow it)."""
        return Identity(
            suite=self.suite.name, norm=self.result.norm, eps=self.result.eps,
            n_examples=self.result.n_examples, seed=self.result.seed,
            batch_size=self.extra.get("batch_size"),
            sweep=tuple(eps for eps, _ in self.sweep or ()), checks=self.checks.level,
            model=self.extra.get("model"),
        )  # fmt: skip

    def finish(self) -> dict[str, Any]:
        """Draw the figures (in memory) and close the timing: the JSON dict, complete before any
        file is written (``advkit eval`` prints the results first). Done once."""
        if self._figures is None:
            clock = time.perf_counter()
            self._figures = self._draw_figures()
            self.timing["figures"] = time.perf_counter() - clock
            earlier = self.timing.get("attacks_earlier_sessions", 0.0)  # a resumed evaluation's
            self.timing["total"] = time.perf_counter() - self.started + earlier
        return self.to_dict()

    def write(
        self,
        out_dir: str | Path | None = None,
        *,
        json_path: str | Path | None = None,
    ) -> WrittenReport:
        """Write the JSON, the Markdown report and the figures into ``out_dir`` (named so that no
        other evaluation there is replaced: :func:`advkit.evaluation.outputs.place_in_folder`),
        or beside ``json_path`` (replacing what is there, as ``advkit eval --json`` does).

        The JSON goes first, then the report, then the figures, each atomically: a write the
        system refuses (a full disk...) is a :class:`advkit.errors.WriteError` naming the file,
        and leaves no figure or report without the JSON they belong to."""
        if (out_dir is None) == (json_path is None):
            raise ValueError("write the report into out_dir or at json_path (one of them)")
        data = self.finish()
        if json_path is not None:
            placement = place_at_file(Path(json_path), self.identity())
        else:
            placement = place_in_folder(Path(out_dir), self.identity(), self.run_threat or {})
        outputs = placement.outputs
        figures = [(getattr(outputs, kind), caption, png) for kind, caption, png in self._figures]
        report = markdown_report(
            data, title=self.title, metadata=self.metadata,
            images={caption: path.name for path, caption, _ in figures},
            descriptions={entry.name: entry.description for entry in self.suite.attacks},
        )  # fmt: skip
        try:
            written = [write_json(outputs.json, data)]
        except WriteError as error:
            if self.state_path is None or not self.state_path.is_file():
                raise
            raise error.then("run it again: it resumes from its saved progress") from error
        if self.state_path is not None:
            self.state_path.unlink(missing_ok=True)
        try:
            written.append(write_markdown(outputs.markdown, report))
            written += [write_bytes(path, png) for path, _, png in figures]
        except WriteError as error:
            raise error.then(
                f"run it again for the report and figures (the results are in {outputs.json})"
            ) from error
        return WrittenReport(placement, written, data)

    def _draw_figures(self) -> list[tuple[str, str, bytes]]:
        """The example grid and (with a sweep) the sweep plot: (Outputs field, caption, PNG)."""
        first = self.test.take(torch.arange(min(4 * GRID_EXAMPLES, len(self.test))))
        examples = attack_examples(self.model, first.images, first.labels, self.suite,
                                   count=GRID_EXAMPLES)  # fmt: skip
        grid = examples_png(
            examples.clean, examples.adversarial,
            examples.labels, examples.clean_predictions, examples.adversarial_predictions,
            class_names=self.class_names, attack=examples.attack,
        )  # fmt: skip
        figures = [("examples", f"Examples ({examples.attack})", grid)]
        if self.sweep:
            plot = sweep_png(self.sweep, norm=self.result.norm, title=self.title)
            figures.append(("sweep", "Robust accuracy against eps", plot))
        return figures


@dataclass(frozen=True)
class WrittenReport:
    """Where an evaluation was written, what was decided on the way, and the JSON dict."""

    placement: Placement
    paths: list[Path]
    data: dict[str, Any]


def run_evaluation(
    model: nn.Module,
    test: Any,
    suite: Suite,
    *,
    eps: float,
    norm: str,
    batch_size: int = 256,
    seed: int = 0,
    checks: str = "fast",
    sweep_eps: list[float] | None = None,
    state_path: Path | None = None,
    world: World | None = None,
    bar: BarFactory = no_bar,
    extra: Mapping[str, Any] | None = None,
    timing: Mapping[str, float] | None = None,
    started: float | None = None,
    **described: Any,
) -> Evaluation | None:
    """Attack ``test`` (a TensorData) with ``suite``, then (on the writer) run the sweep and the
    sanity checks at level ``checks``; None on the other workers, which only share the attacks.

    ``extra`` and ``timing`` (e.g. the seconds spent loading) go into the JSON; without the
    provenance keys in ``extra`` (a weights file's hash, the examples' indices) they are made
    from the model itself (its state's hash, the test data's positions 0..N-1); ``started`` is
    when the whole command began (for the total); ``described`` sets what the report says of
    the model and the report's form (:class:`Evaluation`'s title, metadata, class_names,
    run_threat, confidence, per_sample)."""
    world = world or World()
    started = time.perf_counter() if started is None else started
    timing = dict(timing or {})
    with bar(f"eval {suite.name}", "chunk") as progress, count_forwards(model) as attack_count:
        result = evaluate(
            model, test, None, suite, eps=eps, norm=norm, batch_size=batch_size, seed=seed,
            state_path=state_path, progress=progress, world=world, keep_state=world.size == 1,
        )  # fmt: skip
    # One account of the attacks' time, the report's header and total alike: every session's.
    timing["attacks"], clock = result.seconds, time.perf_counter()
    if result.earlier_seconds:
        timing["attacks_earlier_sessions"] = result.earlier_seconds
    attack_cost = int(world.sum_number(attack_count.cost))
    if not world.is_writer:
        return None
    sweep = None
    if sweep_eps:
        with bar("eps sweep", "chunk") as progress:
            sweep = eps_sweep(model, test, None, sweep_eps, norm=norm, batch_size=batch_size,
                              seed=seed, progress=progress)  # fmt: skip
        timing["sweep"] = time.perf_counter() - clock
    report = _run_checks(model, test, result, sweep, eps, norm, seed, checks, attack_cost, bar)
    timing["checks"] = report.seconds
    record = {"batch_size": batch_size, **(extra or {}), "attack_cost": attack_cost,
              "workers": world.size}  # fmt: skip
    metadata = described.get("metadata") or {}
    architecture = metadata.get("architecture")
    record.setdefault("model_arguments",
                      model_arguments(architecture, metadata.get("model_kwargs")))  # fmt: skip
    if "weights_sha256" not in record:
        record |= provenance(architecture=architecture or type(model).__name__,
                             indices=range(len(test)), model=model)  # fmt: skip
    return Evaluation(result, report, sweep, suite, record, timing, model, test, started,
                      state_path=state_path if world.size == 1 else None,
                      **described)  # fmt: skip


def _run_checks(
    model: nn.Module,
    test: Any,
    result: EvalResult,
    sweep: list[tuple[float, float]] | None,
    eps: float,
    norm: str,
    seed: int,
    level: str,
    attack_cost: int,
    bar: BarFactory,
) -> CheckReport:
    """The sanity checks at ``level``: the fast level's budget is sized from the cost of the
    attacks just run (forward-equivalents), its sample from that budget."""
    if level == "none":
        return CheckReport("none", 0, None)
    budget = fast_budget(attack_cost) if level == "fast" else None
    size = check_sample_size(level, len(test), budget)
    sample = test.take(torch.arange(size))
    context = CheckContext(
        model, sample.images, sample.labels, eps=eps, norm=norm, seed=seed,
        accuracies=result.accuracies(), n_examples=result.n_examples, cascade=result.cascade,
        sweep=sweep or (), level=level, budget=budget, robust=result.worst_case[:size],
    )  # fmt: skip
    with bar(f"checks {level}", "check") as progress:
        return check_all(context, progress=progress)
