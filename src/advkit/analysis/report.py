"""Write analysis results: ``analysis.json``, ``analysis.md`` and figures, for one run or for
several side by side.

``analysis.json`` holds one key per analysis (its summary) and ``settings``: how the results
were made (test points, seed, threat model, dataset, weights fingerprint, versions, ``--set``)
and, under ``settings.analyses``, each analysis's resolved options, time and figures. Results are
merged into the file of their settings (:mod:`advkit.analysis.placement`): a re-run of some
analyses replaces only their keys, figures and sections of the report.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from advkit import __version__
from advkit.analysis import runner
from advkit.analysis.base import ANALYSES
from advkit.analysis.figures import png_bytes
from advkit.analysis.placement import Identity, place, read_json_or_none
from advkit.analysis.runner import LoadedRun, Outcome, overrides, scalar_leaves
from advkit.errors import WriteError
from advkit.evaluation.report import write_json, write_markdown
from advkit.files import write_bytes
from advkit.humanize import format_eps, numbered_repeats

#: Top-level keys of analysis.json that are no analysis.
RESERVED = ("settings",)
_NORM_NAMES = {"linf": "L-inf", "l2": "L2"}


def settings_of(run: LoadedRun, sets: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """What analysis.json's ``settings`` says about how these results were made."""
    ctx = run.context
    return {
        "examples": len(ctx.inputs), "seed": ctx.seed, "eps": ctx.eps, "norm": ctx.norm,
        "dataset": run.dataset, "test_points": run.test_points,
        "sample": f"{len(ctx.inputs)} test indices: torch.randperm({run.test_points}) with "
                  f"seed {ctx.seed}",
        "model": run.model, "set": overrides(sets), "advkit_version": __version__,
        "torch_version": torch.__version__, "device": str(ctx.device),
        "batch_size": ctx.batch_size,
    }  # fmt: skip


def identity_of(run: LoadedRun, sets: Mapping[str, Mapping[str, Any]]) -> Identity:
    ctx = run.context
    return Identity(
        examples=len(ctx.inputs), seed=ctx.seed, eps=ctx.eps, norm=ctx.norm, dataset=run.dataset,
        model=run.model, set=overrides(sets),
    )  # fmt: skip


def tag_of(run: LoadedRun, sets: Mapping[str, Mapping[str, Any]]) -> str:
    """What sets these results apart from the run's default analysis: ``""`` for the default
    settings, else e.g. ``l2-0.5-n64-seed1-loss_landscape.grid41``."""
    ctx = run.context
    parts = []
    own_norm = run.run_threat.get("norm") or "linf"
    own_eps = float(run.run_threat.get("eps") or 0.0)
    if ctx.norm != own_norm or abs(ctx.eps - own_eps) > 1e-12 * max(1.0, own_eps):
        parts.append(f"{ctx.norm}-{ctx.eps:.4g}")
    if run.dataset != ctx.meta.get("dataset"):
        parts.append(run.dataset)
    if len(ctx.inputs) != min(runner.DEFAULT_EXAMPLES, run.test_points):
        parts.append(f"n{len(ctx.inputs)}")
    if ctx.seed != 0:
        parts.append(f"seed{ctx.seed}")
    for key, value in overrides(sets).items():
        parts.append(f"{key}{_shown(value)}")
    return re.sub(r"[^A-Za-z0-9._+-]", "_", "-".join(parts))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@dataclass
class Written:
    """What a write produced: the files, and decisions the user should hear of."""

    paths: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def write_run(
    folder: Path,
    run: LoadedRun,
    outcomes: Sequence[Outcome],
    sets: Mapping[str, Mapping[str, Any]] | None = None,
) -> Written:
    """Write (merge) the outcomes into ``folder``'s analysis files for these settings; see
    :class:`RunWriter`."""
    writer = RunWriter(folder, run, sets)
    for outcome in outcomes:
        writer.add(outcome)
    return writer.finish()


class RunWriter:
    """Writes one run's results: figures drawn as they come (:meth:`add`, timed into the
    outcome's seconds), then analysis.json, analysis.md and the figures at the end
    (:meth:`finish`).

    The files are ``analysis.*`` for the run's default settings, else ``analysis-<tag>.*``
    (:func:`tag_of`); results already there with the same settings are kept unless re-run."""

    def __init__(
        self, folder: Path, run: LoadedRun, sets: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        sets = sets or {}
        identity = identity_of(run, sets)
        stem, notes = place(folder, identity, tag_of(run, sets))
        self._merge = _Merge(folder, stem, identity, settings_of(run, sets), notes)
        self.title = f"Analysis of {run.label}"

    def add(self, outcome: Outcome) -> list[Path]:
        """Save the outcome's figures and keep its summary and section; returns the figures."""
        summary = outcome.result.summary if outcome.result else None
        figures = outcome.result.figures if outcome.result else {}
        return self._merge.add(outcome, summary, figures, _section)

    def finish(self) -> Written:
        """Write analysis.json and analysis.md; what was written, and notes for the user."""
        return self._merge.finish(self.title)


class _Merge:
    """The merge shared by a run's files and a comparison's: the earlier file of the same
    settings, with the new analyses' entries, figures and report sections in place of theirs."""

    def __init__(
        self, folder: Path, stem: str, identity: Identity, settings: dict[str, Any],
        notes: list[str],
    ) -> None:  # fmt: skip
        self.folder, self.stem = folder, stem
        self.written = Written(notes=list(notes))
        old = read_json_or_none(folder / f"{stem}.json")
        if old is None or Identity.from_settings(old.get("settings")) != identity:
            old = {}
        self.old_analyses = (old.get("settings") or {}).get("analyses") or {}
        self.settings = {**settings, "analyses": dict(self.old_analyses)}
        self.entries = {name: value for name, value in old.items() if name not in RESERVED}
        md_path = folder / f"{stem}.md"
        self.sections = _sections(md_path.read_text()) if old and md_path.is_file() else {}
        #: figures drawn (PNG bytes), written by :meth:`finish` after the JSON; and those of
        #: the earlier results they replace, removed then
        self.figures: dict[Path, bytes] = {}
        self.stale: list[Path] = []

    def add(
        self,
        outcome: Any,
        entry: Any,
        figures: Mapping[str, Any],
        section: Callable[[Any, list[str]], str],
    ) -> list[Path]:
        name = outcome.name
        record: dict[str, Any] = {"options": outcome.options}
        if entry is None:  # skipped: an earlier result of the same settings stays
            if name in self.entries and "skipped" not in (self.old_analyses.get(name) or {}):
                self.written.notes.append(f"kept the earlier {name} result: {outcome.skipped}")
                return []
            self.entries[name] = {"skipped": outcome.skipped}
            self.settings["analyses"][name] = {
                **record, "seconds": round(outcome.seconds, 3), "skipped": outcome.skipped,
            }  # fmt: skip
            self.sections[name] = f"Skipped: {outcome.skipped}."
            return []
        started = time.perf_counter()
        self.stale += [
            self.folder / f for f in (self.old_analyses.get(name) or {}).get("figures", [])
        ]
        drawn = {
            self.folder / f"{self.stem}-{name}-{figure_stem}.png": png_bytes(figure)
            for figure_stem, figure in figures.items()
        }
        outcome.seconds += time.perf_counter() - started
        paths = list(drawn)
        files = [path.name for path in paths]
        self.figures.update(drawn)
        self.entries[name] = entry
        self.settings["analyses"][name] = {
            **record, "seconds": round(outcome.seconds, 3), "figures": files,
        }  # fmt: skip
        self.sections[name] = section(outcome, files)
        return paths

    def finish(self, title: str) -> Written:
        """The JSON first, then the report, then the figures, each atomically: a refused write
        (a full disk...) leaves no figure or report without the results they belong to."""
        names = _ordered(list(self.entries))
        data = {"settings": self.settings, **{name: self.entries[name] for name in names}}
        json_path = write_json(self.folder / f"{self.stem}.json", data)
        text = _markdown(title, self.settings, names, self.sections)
        try:
            md_path = write_markdown(self.folder / f"{self.stem}.md", text)
            for path, png in self.figures.items():
                write_bytes(path, png)
        except WriteError as error:
            raise error.then(
                f"run it again for the figures (the results are in {json_path})"
            ) from error
        for stale in self.stale:
            if stale not in self.figures:
                stale.unlink(missing_ok=True)
        self.written.paths = [json_path, md_path, *self.figures]
        return self.written


def _ordered(names: Sequence[str]) -> list[str]:
    """Registry order, then names no longer registered (kept from an earlier version)."""
    known = [name for name in ANALYSES.names() if name in names]
    return known + [name for name in names if name not in ANALYSES]


def _section(outcome: Outcome, files: Sequence[str]) -> str:
    text = outcome.result.markdown.strip() if outcome.result else ""
    images = "\n\n".join(f"![{Path(f).stem}]({f})" for f in files)
    return "\n\n".join(part for part in (text, images) if part)


_BEGIN, _END = "<!-- analysis:{} -->", "<!-- /analysis:{} -->"
_SECTION = re.compile(r"<!-- analysis:(\S+) -->\n(.*?)\n<!-- /analysis:\1 -->", re.DOTALL)
_HEADING = re.compile(r"\A## .*\n\n(?:\*.*\*\n\n)?", re.MULTILINE)


def _sections(text: str) -> dict[str, str]:
    """The body of each analysis's section of an analysis.md written here (heading removed)."""
    return {name: _HEADING.sub("", body, count=1).strip() for name, body in _SECTION.findall(text)}


def _markdown(
    title: str, settings: Mapping[str, Any], names: Sequence[str], sections: Mapping[str, str]
) -> str:
    lines = [f"# {title}", "", _settings_line(settings), ""]
    for name in names:
        description = ANALYSES.meta(name).get("description", "") if name in ANALYSES else ""
        body = sections.get(name) or "(see analysis.json: its section was not found)"
        lines += [_BEGIN.format(name), f"## {name}", ""]
        if description:
            lines += [f"*{description}*", ""]
        lines += [body, _END.format(name), ""]
    return "\n".join(lines)


def _settings_line(settings: Mapping[str, Any]) -> str:
    """``Settings: 256 test points of fashion-mnist drawn with seed 0; L-inf eps 0.1; ...``;
    for a comparison, each run's threat model and dataset."""
    runs = settings.get("runs")
    if runs:
        where = "from each run's test data"
        threat = ", ".join(
            f"{label}: {_NORM_NAMES.get(r.get('norm'), r.get('norm'))} eps "
            f"{format_eps(float(r.get('eps', 0.0)))} on {r.get('dataset')}"
            for label, r in runs.items()
        )
    else:
        where = f"of {settings.get('dataset')}"
        threat = (
            f"{_NORM_NAMES.get(settings.get('norm'), settings.get('norm'))} eps "
            f"{format_eps(float(settings.get('eps', 0.0)))}"
        )
    parts = [
        f"{settings.get('examples')} test points {where} drawn with seed {settings.get('seed')}",
        threat,
        ", ".join(f"{k}={v}" for k, v in (settings.get("set") or {}).items()) or None,
        f"advkit {settings.get('advkit_version')}, torch {settings.get('torch_version')}",
    ]
    return "Settings: " + "; ".join(part for part in parts if part) + "."


# --- several runs side by side ---------------------------------------------------------------


def labels_for(folders: Sequence[Path]) -> list[str]:
    """A distinct label per run: its folder's name, with its parent's where names repeat."""
    names = [folder.resolve().name for folder in folders]
    labels = [
        f"{folder.resolve().parent.name}/{name}" if names.count(name) > 1 else name
        for folder, name in zip(folders, names, strict=True)
    ]
    return numbered_repeats(labels)


def write_comparison(
    folder: Path,
    loaded: Sequence[LoadedRun],
    outcomes: Sequence[Sequence[Outcome]],
    sets: Mapping[str, Mapping[str, Any]] | None = None,
) -> Written:
    """The runs side by side in ``folder``: per analysis, each run's summary under its label in
    analysis.json, the ``compare`` figures and a table of every run's numbers in analysis.md."""
    sets = sets or {}
    first = loaded[0].context
    runs_entry = {
        run.label: {"run": str(run.folder.resolve()), "model": run.model, "dataset": run.dataset,
                    "eps": run.context.eps, "norm": run.context.norm}
        for run in loaded
    }  # fmt: skip
    identity = Identity(
        examples=len(first.inputs), seed=first.seed, eps=0.0, norm="", dataset="",
        model="", set=overrides(sets), runs=runs_entry,
    )  # fmt: skip
    stem, notes = place(folder, identity, "")
    settings = {
        "examples": len(first.inputs), "seed": first.seed, "set": overrides(sets),
        "runs": runs_entry, "advkit_version": __version__, "torch_version": torch.__version__,
    }  # fmt: skip
    by_name: dict[str, dict[str, Outcome]] = {}
    for run, run_outcomes in zip(loaded, outcomes, strict=True):
        for outcome in run_outcomes:
            by_name.setdefault(outcome.name, {})[run.label] = outcome
    merge = _Merge(folder, stem, identity, settings, notes)
    for name, per_run in by_name.items():
        compared = _Compared(name, per_run, next(iter(per_run.values())).options, 0.0)
        entry = {label: _summary_or_skip(outcome) for label, outcome in per_run.items()}
        merge.add(compared, entry, _compare_figures(compared), _compare_section)
    return merge.finish(f"Comparison of {', '.join(run.label for run in loaded)}")


@dataclass
class _Compared:
    """One analysis over several runs, as the shared writer takes it."""

    name: str
    per_run: dict[str, Outcome]
    options: dict[str, Any]
    seconds: float

    @property
    def skipped(self) -> str | None:
        if any(outcome.result is not None for outcome in self.per_run.values()):
            return None
        return "; ".join(f"{label}: {o.skipped}" for label, o in self.per_run.items())


def _summary_or_skip(outcome: Outcome) -> Any:
    return outcome.result.summary if outcome.result else {"skipped": outcome.skipped}


def _compare_figures(compared: _Compared) -> Mapping[str, Any]:
    results = {label: o.result for label, o in compared.per_run.items() if o.result is not None}
    compare = ANALYSES.meta(compared.name).get("compare")
    if compare is None or not results:
        return {}
    return compare(results)


def _compare_section(compared: _Compared, files: list[str]) -> str:
    per_run = compared.per_run
    leaves = {label: scalar_leaves(o.result.summary) for label, o in per_run.items() if o.result}
    lines = []
    if leaves:
        keys = list(dict.fromkeys(key for values in leaves.values() for key in values))
        lines += ["| | " + " | ".join(leaves) + " |", "|---|" + "---:|" * len(leaves)]
        for key in keys:
            cells = [f"{values[key]:.4g}" if key in values else "" for values in leaves.values()]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    for label, outcome in per_run.items():
        if outcome.result is None:
            lines += ["", f"{label}: skipped, {outcome.skipped}."]
    images = [f"![{Path(f).stem}]({f})" for f in files]
    return "\n".join(lines) + ("\n\n" + "\n\n".join(images) if images else "")
