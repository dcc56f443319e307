"""Where a certification's outputs go, so that no certification replaces another.

A certification writes ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` (certified accuracy
against radius), and while it runs its per-sample state ``<stem>.state.pt`` (one per worker:
``<stem>.rank<R>of<W>.state.pt``). The stem is ``cert-sigma<S>`` followed by what differs from
the defaults (``-select<N0>``, ``-n<N>``, ``-alpha<A>``, ``-ex<COUNT>``, ``-skip<K>``,
``-seed<S>``). Running the very same certification again (the same parameters and weights)
replaces it in place; a name held by a different one (other weights, other samples) gets
``-2``, ``-3``, ... and a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_N0 = 100
DEFAULT_N = 100_000
DEFAULT_ALPHA = 0.001
DEFAULT_EXAMPLES = 500
DEFAULT_SKIP = 1
DEFAULT_SEED = 0


@dataclass(frozen=True)
class CertIdentity:
    """What makes a certification a different one (as its JSON records it)."""

    sigma: float
    n0: int
    n: int
    alpha: float
    n_examples: int
    skip: int
    seed: int
    model: str | None

    @classmethod
    def from_report(cls, data: dict[str, Any]) -> CertIdentity:
        return cls(
            sigma=float(data["sigma"]), n0=int(data["n0"]), n=int(data["n"]),
            alpha=float(data["alpha"]), n_examples=int(data["n_examples"]),
            skip=int(data["skip"]), seed=int(data["seed"]), model=data.get("model"),
        )  # fmt: skip


def stem(sigma: float, *, n0: int = DEFAULT_N0, n: int = DEFAULT_N, alpha: float = DEFAULT_ALPHA,
         n_examples: int = DEFAULT_EXAMPLES, skip: int = DEFAULT_SKIP,
         seed: int = DEFAULT_SEED) -> str:  # fmt: skip
    """``cert-sigma0.25`` plus the parameters that differ from the defaults."""
    text = f"cert-sigma{sigma:.4g}"
    if n0 != DEFAULT_N0:
        text += f"-select{n0}"
    if n != DEFAULT_N:
        text += f"-n{n}"
    if alpha != DEFAULT_ALPHA:
        text += f"-alpha{alpha:.4g}"
    if n_examples != DEFAULT_EXAMPLES:
        text += f"-ex{n_examples}"
    if skip != DEFAULT_SKIP:
        text += f"-skip{skip}"
    if seed != DEFAULT_SEED:
        text += f"-seed{seed}"
    return text


@dataclass(frozen=True)
class CertOutputs:
    json: Path
    markdown: Path
    figure: Path

    @classmethod
    def at(cls, base: Path) -> CertOutputs:
        return cls(base.with_name(f"{base.name}.json"), base.with_name(f"{base.name}.md"),
                   base.with_name(f"{base.name}.png"))  # fmt: skip


def state_path(folder: Path, base: str, rank: int = 0, size: int = 1) -> Path:
    """The per-sample state of the certification named ``base`` (per worker with several)."""
    if size > 1:
        return folder / f"{base}.rank{rank}of{size}.state.pt"
    return folder / f"{base}.state.pt"


def place(folder: Path, base: str, identity: CertIdentity) -> tuple[CertOutputs, list[str]]:
    """``base``'s outputs in ``folder``, or ``base-2``, ... if a different certification holds
    them; notes for the user."""
    for suffix in ("", *(f"-{i}" for i in range(2, 10_000))):
        outputs = CertOutputs.at(folder / f"{base}{suffix}")
        if not outputs.json.exists():
            notes = [] if not suffix else [
                f"kept {base}.json (another certification); this one is {outputs.json.name}"
            ]  # fmt: skip
            return outputs, notes
        if read_identity(outputs.json) == identity:
            return outputs, [f"replaced {outputs.json.name}: the same certification, run again"]
    raise ValueError(f"{folder} holds 10,000 certifications named {base}-*; clean it up")


def read_identity(path: Path) -> CertIdentity | None:
    try:
        return CertIdentity.from_report(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None
