"""Where an evaluation's outputs go, so that no evaluation silently replaces another.

An evaluation writes ``<stem>.json``, ``<stem>.md``, ``<stem>-examples.png`` and, with an eps
sweep, ``<stem>-sweep.png``; while it runs, its resumable state is ``<state stem>.state.pt``.

In a folder (the run folder, or ``advkit eval --out DIR``) the stem is ``eval-<tag>``:

- the *main* tag is the suite's name at the run's own threat model, else ``<suite>-<norm>-<eps>``:
  ``eval-quick.json`` is the run's main result for the quick suite, the file scripts read;
- the *full* tag adds what else tells two evaluations apart: ``-n<examples>``, then
  ``-seed<S>``, ``-b<batch size>``, ``-sweep``, ``-checks-<level>`` where they differ from the
  defaults, and ``-model<hash>`` for weights the run folder no longer holds.

The main file holds the largest evaluation (most examples; of equal ones, the latest). An
evaluation that is not larger than the main one is written under its full tag; one that is larger
(or the main one evaluated other weights) takes the main name, and the one it displaces is moved,
report and figures with it, to its own full tag. Running the very same evaluation again replaces
it in place. A name already taken by a different evaluation gets ``-2``, ``-3``, ... So every
evaluation keeps its files, and each decision comes back as a note for the user.

With an explicit JSON path (``--json PATH``) the stem is PATH without ``.json``: the user chose the
file, and a different evaluation already there is replaced with a note.

The state file is named by what determines the attacks' results (suite, threat, examples, seed,
batch size), so an interrupted evaluation resumes only from its own progress, whatever else ran in
between.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from advkit.evaluation.checks import DEFAULT_CHECK_LEVEL
from advkit.evaluation.provenance import file_sha256
from advkit.files import write_text

#: Defaults that the full tag leaves out (the CLI's).
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class Identity:
    """Everything that makes an evaluation a different one (as recorded in its JSON).

    ``batch_size`` and ``model`` are None in files written before they were recorded, and
    ``checks`` is "full" there (the only level then).
    """

    suite: str
    norm: str
    eps: float
    n_examples: int
    seed: int = DEFAULT_SEED
    batch_size: int | None = DEFAULT_BATCH_SIZE
    sweep: tuple[float, ...] = ()
    checks: str = DEFAULT_CHECK_LEVEL
    model: str | None = None

    @classmethod
    def from_report(cls, data: Mapping[str, Any]) -> Identity:
        """The identity of an evaluation from its JSON dict."""
        checks = data.get("checks")
        return cls(
            suite=str(data["suite"]), norm=str(data["norm"]), eps=float(data["eps"]),
            n_examples=int(data["n_examples"]), seed=int(data.get("seed", DEFAULT_SEED)),
            batch_size=data.get("batch_size"),
            sweep=tuple(float(point["eps"]) for point in data.get("sweep") or ()),
            checks=checks["level"] if isinstance(checks, Mapping) else "full",
            model=data.get("model"),
        )  # fmt: skip

    def describe(self) -> str:
        """``500 examples, seed 1, checks none``: the size, then what differs from the defaults."""
        parts = [f"{self.n_examples} examples"]
        if self.seed != DEFAULT_SEED:
            parts.append(f"seed {self.seed}")
        if self.batch_size not in (None, DEFAULT_BATCH_SIZE):
            parts.append(f"batch size {self.batch_size}")
        if self.sweep:
            parts.append("eps sweep")
        if self.checks != DEFAULT_CHECK_LEVEL:
            parts.append(f"checks {self.checks}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Outputs:
    """The files of one evaluation."""

    json: Path
    markdown: Path
    examples: Path
    sweep: Path

    @classmethod
    def at(cls, stem: Path, json_path: Path | None = None) -> Outputs:
        return cls(
            json=json_path or stem.with_name(f"{stem.name}.json"),
            markdown=stem.with_name(f"{stem.name}.md"),
            examples=stem.with_name(f"{stem.name}-examples.png"),
            sweep=stem.with_name(f"{stem.name}-sweep.png"),
        )


@dataclass(frozen=True)
class Placement:
    """Where this evaluation's outputs go, and what was decided on the way (to tell the user)."""

    outputs: Outputs
    notes: list[str] = field(default_factory=list)


def main_tag(suite: str, eps: float, norm: str, run_threat: Mapping[str, Any]) -> str:
    """The suite's name at the run's own threat model, else ``<suite>-<norm>-<eps>``."""
    own_norm = run_threat.get("norm") or "linf"
    own_eps = float(run_threat.get("eps") or 0.0)
    if norm == own_norm and math.isclose(eps, own_eps, rel_tol=1e-9, abs_tol=1e-12):
        return suite
    return f"{suite}-{norm}-{eps:.4g}"


def state_tag(identity: Identity, run_threat: Mapping[str, Any]) -> str:
    """The main tag plus what changes the attacks' results: examples, seed, batch size."""
    tag = main_tag(identity.suite, identity.eps, identity.norm, run_threat)
    tag += f"-n{identity.n_examples}"
    if identity.seed != DEFAULT_SEED:
        tag += f"-seed{identity.seed}"
    if identity.batch_size not in (None, DEFAULT_BATCH_SIZE):
        tag += f"-b{identity.batch_size}"
    return tag


def full_tag(identity: Identity, run_threat: Mapping[str, Any], model: str | None) -> str:
    """The state tag plus the sweep, a non-default check level and other weights than ``model``."""
    tag = state_tag(identity, run_threat)
    if identity.sweep:
        tag += "-sweep"
    if identity.checks != DEFAULT_CHECK_LEVEL:
        tag += f"-checks-{identity.checks}"
    if identity.model is not None and model is not None and identity.model != model:
        tag += f"-model{identity.model[:8]}"
    return tag


def state_path(folder: Path, identity: Identity, run_threat: Mapping[str, Any]) -> Path:
    """The resumable state of this evaluation's attacks, in an output folder."""
    return folder / f"eval-{state_tag(identity, run_threat)}.state.pt"


def place_in_folder(folder: Path, identity: Identity, run_threat: Mapping[str, Any]) -> Placement:
    """Decide this evaluation's stem in ``folder``, moving a smaller main result aside."""
    tag = main_tag(identity.suite, identity.eps, identity.norm, run_threat)
    main = Outputs.at(folder / f"eval-{tag}")
    own = Outputs.at(folder / f"eval-{full_tag(identity, run_threat, identity.model)}")
    existing = _read_identity(main.json) if main.json.exists() else identity
    if existing is None:
        target = _free(folder, full_tag(identity, run_threat, identity.model), identity)
        note = (
            f"left {main.json} alone (not an evaluation advkit can read); this evaluation is "
            f"{target.json.name}"
        )
        return Placement(target, [note])
    other_weights = existing.model is not None and existing.model != identity.model
    if existing != identity and not other_weights and identity.n_examples < existing.n_examples:
        target = _free(folder, full_tag(identity, run_threat, identity.model), identity)
        note = (
            f"kept {main.json.name} ({existing.describe()}), the run's main result as the larger "
            f"evaluation; this one ({identity.describe()}) is {target.json.name}"
        )
        return Placement(target, [note])
    notes = []
    if existing != identity:
        moved = _free(folder, full_tag(existing, run_threat, identity.model), existing)
        _move(main, moved, folder / f"report-{tag}.md")
        if other_weights:
            why = "of other weights"
        elif identity.n_examples > existing.n_examples:
            why = "smaller"
        else:
            why = "of the same size, earlier"
        notes.append(
            f"moved the earlier evaluation in {main.json.name} ({existing.describe()}, {why}) to "
            f"{moved.json.name}; {main.json.name} holds this one ({identity.describe()})"
        )
    if own.json.exists() and _read_identity(own.json) == identity:
        _remove(own)  # an earlier run of this very evaluation, under its full tag
        notes.append(f"removed {own.json.name}: the same evaluation, now in {main.json.name}")
    return Placement(main, notes)


def place_at_file(json_path: Path, identity: Identity) -> Placement:
    """Outputs beside an explicit JSON path, with the same stem."""
    stem = json_path.with_suffix("") if json_path.suffix == ".json" else json_path
    placement = Placement(Outputs.at(stem, json_path))
    if json_path.exists():
        existing = _read_identity(json_path)
        if existing != identity:
            held = existing.describe() if existing else "not an advkit evaluation"
            placement.notes.append(f"replaced {json_path} ({held}) as --json asks")
    return placement


def weights_fingerprint(path: str | os.PathLike[str]) -> str:
    """The first 16 hex digits of the SHA-256 of a weights file."""
    return file_sha256(path)[:16]


def _read_identity(path: Path) -> Identity | None:
    try:
        return Identity.from_report(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _free(folder: Path, tag: str, identity: Identity) -> Outputs:
    """``eval-<tag>``, or ``eval-<tag>-2``, ... if another evaluation holds that name."""
    for suffix in ("", *(f"-{i}" for i in range(2, 10_000))):
        outputs = Outputs.at(folder / f"eval-{tag}{suffix}")
        if not outputs.json.exists() or _read_identity(outputs.json) == identity:
            return outputs
    raise ValueError(f"{folder} holds 10,000 evaluations named eval-{tag}-*; clean it up")


def _remove(outputs: Outputs) -> None:
    for path in (outputs.examples, outputs.sweep, outputs.markdown, outputs.json):
        path.unlink(missing_ok=True)


def _move(source: Outputs, target: Outputs, legacy_report: Path) -> None:
    """Rename an evaluation's files (the report's links to its figures follow).

    The renamed report is written first (the one step that needs space; atomic): if that is
    refused, nothing has moved yet. Renames within a folder need no space."""
    report = source.markdown if source.markdown.exists() else legacy_report
    if report.exists():
        text = report.read_text()
        for old, new in ((source.examples, target.examples), (source.sweep, target.sweep)):
            text = text.replace(f"]({old.name})", f"]({new.name})")
        write_text(target.markdown, text)
    for old, new in ((source.examples, target.examples), (source.sweep, target.sweep)):
        if old.exists():
            os.replace(old, new)
    os.replace(source.json, target.json)
    if report.exists():
        report.unlink()
