"""Where analysis results go, so that no result replaces one made with other settings.

In a folder, results live in ``<stem>.json`` / ``<stem>.md`` with figures ``<stem>-<name>-*.png``.
The stem is ``analysis`` for a run's default settings (its own threat model and dataset, the
default number of test points, seed 0, no ``--set``), else ``analysis-<tag>`` with a tag saying
what differs (``analysis-n64-seed1.json``, ``analysis-l2-0.5.json``,
``analysis-loss_landscape.grid41.json``). A file holds the results of one :class:`Identity`:
analyses run later with the same settings join it (replacing only their own keys); a name that
holds other settings is left alone and the results go to ``<stem>-2``, ``-3``, ...; a file of
the same settings made on other weights (training went on) is moved, figures and report with it,
to ``<stem>-model<hash>``. Every such decision comes back as a note for the user.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from advkit.evaluation.report import write_json
from advkit.files import write_text

#: Names tried per stem before giving up.
_MAX_SUFFIX = 10_000


@dataclass
class Identity:
    """What makes two analyses' results different ones (``settings`` in analysis.json).

    ``set`` holds the ``--set`` values that differ from the defaults; ``runs`` the runs of a
    comparison (None for one run's results)."""

    examples: int
    seed: int
    eps: float
    norm: str
    dataset: str
    model: str
    set: dict[str, Any] = field(default_factory=dict)
    runs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.eps = float(f"{float(self.eps):.12g}")  # a JSON round trip compares equal
        self.set = json.loads(json.dumps(self.set))

    @classmethod
    def from_settings(cls, settings: Any) -> Identity | None:
        """The identity recorded in an analysis.json's ``settings``; None if it is not one."""
        if not isinstance(settings, dict):
            return None
        try:
            return cls(
                examples=int(settings["examples"]), seed=int(settings["seed"]),
                eps=float(settings.get("eps", 0.0)), norm=str(settings.get("norm", "")),
                dataset=str(settings.get("dataset", "")), model=str(settings.get("model", "")),
                set=dict(settings.get("set") or {}), runs=settings.get("runs"),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            return None


def read_json_or_none(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None if it is missing, unreadable or no object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def place(folder: Path, identity: Identity, tag: str) -> tuple[str, list[str]]:
    """The stem in ``folder`` for results of ``identity`` (``analysis`` or ``analysis-<tag>``,
    else the first free ``-2``, ``-3``, ...), and notes on what was decided."""
    base = f"analysis-{tag}" if tag else "analysis"
    notes: list[str] = []
    for stem in _candidates(base):
        path = folder / f"{stem}.json"
        if not path.exists():
            break
        data = read_json_or_none(path)
        existing = Identity.from_settings(data.get("settings")) if data else None
        if existing == identity:
            break
        if existing is not None and replace(existing, model=identity.model) == identity:
            moved = _free(folder, f"{base}-model{existing.model[:8]}", existing)
            move(folder, stem, moved, data)
            notes.append(
                f"moved the earlier {stem}.json (other weights, {existing.model[:8]}) to "
                f"{moved}.json; {stem}.json holds the analysis of the current weights"
            )
            break
    else:
        raise ValueError(f"{folder} holds {_MAX_SUFFIX} analyses named {base}-*; clean it up")
    if stem != base:
        notes.append(
            f"left {base}.json alone (results made with other settings, or a file advkit cannot "
            f"read); these results are {stem}.json"
        )
    return stem, notes


def _candidates(base: str) -> list[str]:
    return [base, *(f"{base}-{i}" for i in range(2, _MAX_SUFFIX))]


def _free(folder: Path, base: str, identity: Identity) -> str:
    for stem in _candidates(base):
        data = read_json_or_none(folder / f"{stem}.json")
        if not (folder / f"{stem}.json").exists():
            return stem
        if data and Identity.from_settings(data.get("settings")) == identity:
            return stem
    raise ValueError(f"{folder} holds {_MAX_SUFFIX} analyses named {base}-*; clean it up")


def move(folder: Path, old: str, new: str, data: dict[str, Any]) -> None:
    """Rename the results ``old`` to ``new``: figures (as the JSON lists them), the report with
    its links, then the JSON.

    The new report and JSON are written first (the steps that need space; atomic), and the old
    ones removed last: a refused write leaves the old results as they were."""
    analyses = (data.get("settings") or {}).get("analyses") or {}
    renames = {}
    for record in analyses.values():
        if not isinstance(record, dict):
            continue
        files = []
        for name in record.get("figures") or []:
            target = new + name[len(old) :] if name.startswith(old) else f"{new}-{name}"
            renames[name] = target
            files.append(target)
        record["figures"] = files
    report = folder / f"{old}.md"
    try:
        if report.exists():
            text = report.read_text()
            for name, target in renames.items():
                text = text.replace(f"]({name})", f"]({target})")
            write_text(folder / f"{new}.md", text)
        write_json(folder / f"{new}.json", data)
    except OSError:
        (folder / f"{new}.md").unlink(missing_ok=True)
        raise
    for name, target in renames.items():
        if (folder / name).exists():
            os.replace(folder / name, folder / target)
    report.unlink(missing_ok=True)
    (folder / f"{old}.json").unlink()
