"""How far an evaluation's attacks are: which attack runs, on how many examples, how many are
still robust, and how long the attack and the whole evaluation have left.

The work is a list of units, one per (attack, chunk) of this worker: the attacks in turn over
the chunks, or, in a cascade, every stage of a chunk before the next chunk. Inside a unit the
progress is the model's calls so far against the calls the attack makes (from its settings,
:func:`expected_calls`), counted by a forward pre-hook: a Python counter, no device
synchronization. The ETAs come from the measured time per example of each attack; an attack
not measured yet is priced by the time per example and model call of those that were, and a
cascade stage of a later chunk at the share of the chunk that reached it so far.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import nn

#: Model calls per run of an attack, by function name: f(keywords with defaults) -> calls.
_CALLS: dict[str, Callable[[dict[str, Any]], int]] = {
    "fgsm": lambda k: 1,
    "pgd": lambda k: k["steps"] * k["restarts"],
    "apgd": lambda k: (k["steps"] + 1) * k["restarts"],
    "apgd_targeted": lambda k: (k["steps"] + 1) * k["num_target_classes"],
    "square": lambda k: k["queries"],
}
#: Seconds between two reports from inside an attack.
REPORT_INTERVAL = 0.5


def expected_calls(attack: Callable[..., Any]) -> int | None:
    """The model calls ``attack`` (a ``functools.partial`` over one of advkit's attacks) makes
    on a batch, or None for an attack it does not know. An upper bound where an attack stops
    early (Square once every example is fooled, APGD-T's targets past the class count)."""
    if not isinstance(attack, partial):
        return None
    function = attack.func
    count = _CALLS.get(getattr(function, "__name__", ""))
    if count is None:
        return None
    keywords = {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    } | dict(attack.keywords)
    try:
        return max(int(count(keywords)), 1)
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class Unit:
    """One attack on one chunk: ``examples`` to attack (known when it starts)."""

    attack: str
    chunk: int
    size: int  # the chunk's examples
    examples: int | None = None
    seconds: float | None = None


@dataclass(frozen=True, kw_only=True)
class Status:
    """What a progress report says beside the count of units (see ``evaluate.Progress``)."""

    attack: str | None = None
    attack_index: int = 0
    attacks: int = 0
    examples_done: int = 0
    examples_total: int = 0
    robust: int | None = None
    eta_attack: float | None = None
    eta_total: float | None = None


@dataclass
class AttackClock:
    """The units of one worker's attacks and their timing (``plan`` once the chunks are known,
    ``running`` around each unit's attack, ``done`` after it)."""

    model: nn.Module
    attacks: dict[str, int | None]  # name -> expected model calls per run
    cascade: bool
    units: list[Unit] = field(default_factory=list)
    robust: dict[str, int] = field(default_factory=dict)  # name -> robust after it, so far
    position: int = 0  # the unit running or next
    calls: int = 0  # model calls in the running unit
    started: float | None = None

    @classmethod
    def of(cls, model: nn.Module, entries: Any, cascade: bool) -> AttackClock:
        return cls(model, {entry.name: expected_calls(entry.attack) for entry in entries}, cascade)

    def plan(self, chunk_sizes: list[int]) -> None:
        """This worker's chunks (their sizes, in order): the units in the order they run."""
        names = list(self.attacks)
        if self.cascade:
            pairs = [(name, c) for c in range(len(chunk_sizes)) for name in names]
        else:
            pairs = [(name, c) for name in names for c in range(len(chunk_sizes))]
        self.units = [Unit(name, c, chunk_sizes[c]) for name, c in pairs]
        self.position = 0

    def start(self, attack: str, examples: int) -> None:
        """The next unit (``attack`` on its chunk) starts, attacking ``examples``."""
        self.position = self._unit(attack)
        self.units[self.position].examples = examples
        self.calls = 0
        self.started = time.perf_counter()

    def done(self, attack: str, robust: int | None = None, *, computed: bool = True) -> None:
        """The unit of ``attack`` is finished (read from saved state if not ``computed``);
        ``robust``: of its chunk's examples, those still robust after it."""
        index = self._unit(attack)
        unit = self.units[index]
        if computed and self.started is not None and unit.examples:
            unit.seconds = time.perf_counter() - self.started
        self.started = None
        self.position = index + 1
        if robust is not None:
            self.robust[attack] = self.robust.get(attack, 0) + robust

    @contextmanager
    def counting(self, report: Callable[[float], None]) -> Iterator[None]:
        """Count the model's calls in the block; ``report(fraction of the unit)`` now and then."""
        last = [time.perf_counter()]

        def hook(module: nn.Module, args: Any) -> None:
            self.calls += 1
            now = time.perf_counter()
            if now - last[0] >= REPORT_INTERVAL:
                last[0] = now
                report(self.fraction())

        handle = self.model.register_forward_pre_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def fraction(self) -> float:
        """How far the running unit is, from its model calls (0 when unknown; below 1)."""
        if self.position >= len(self.units) or self.started is None:
            return 0.0
        expected = self.attacks.get(self.units[self.position].attack)
        return min(self.calls / expected, 0.99) if expected else 0.0

    def status(self) -> Status:
        """The report's fields for the unit running or next."""
        if not self.units:
            return Status()
        current = self.units[min(self.position, len(self.units) - 1)]
        names = list(self.attacks)
        mine = [i for i, u in enumerate(self.units) if u.attack == current.attack]
        done = sum(self.units[i].size for i in mine if i < self.position)
        here = [min(self.position, len(self.units) - 1)] if self.cascade else mine
        return Status(
            attack=current.attack, attack_index=names.index(current.attack) + 1,
            attacks=len(names), examples_done=done,
            examples_total=sum(self.units[i].size for i in mine),
            robust=self.robust.get(current.attack), eta_attack=self._remaining(here),
            eta_total=self._remaining(range(len(self.units))),
        )  # fmt: skip

    # -- estimates ------------------------------------------------------------------------
    def _remaining(self, indices: Any) -> float | None:
        """Seconds the unfinished units at ``indices`` have left (None when nothing is
        measured yet to price them)."""
        total = 0.0
        for i in indices:
            if i < self.position:
                continue
            unit = self.units[i]
            running = i == self.position and self.started is not None
            elapsed = time.perf_counter() - self.started if running else 0.0  # type: ignore[operator]
            fraction = self.fraction() if running else 0.0
            if fraction > 0.05:
                total += elapsed * (1 - fraction) / fraction
                continue
            estimate = self._estimate(unit)
            if estimate is None:
                return None
            total += max(estimate - elapsed, 0.0)
        return total

    def _estimate(self, unit: Unit) -> float | None:
        measured = [u for u in self.units if u.seconds is not None and u.examples]
        examples = unit.examples if unit.examples is not None else self._reach(unit)
        same = [u for u in measured if u.attack == unit.attack]
        if same:
            per = sum(u.seconds for u in same) / sum(u.examples for u in same)  # type: ignore[misc]
            return per * examples
        calls = self.attacks.get(unit.attack)
        weighed = [u for u in measured if self.attacks.get(u.attack)]
        if not calls or not weighed:
            return None
        work = sum(u.examples * self.attacks[u.attack] for u in weighed)  # type: ignore[operator]
        return sum(u.seconds for u in weighed) / work * examples * calls  # type: ignore[misc]

    def _reach(self, unit: Unit) -> float:
        """Examples a unit not started yet will attack: its chunk's size times the share of
        examples that reached its attack in the chunks so far (a cascade's later stages)."""
        if not self.cascade:
            return unit.size
        seen = [u for u in self.units if u.attack == unit.attack and u.examples is not None]
        if not seen:
            return unit.size
        return unit.size * sum(u.examples for u in seen) / sum(u.size for u in seen)  # type: ignore[misc]

    def _unit(self, attack: str) -> int:
        """The index of the next unit of ``attack`` (from the one running or next)."""
        for index in range(self.position, len(self.units)):
            if self.units[index].attack == attack:
                return index
        raise ValueError(f"no unit of {attack!r} left")
