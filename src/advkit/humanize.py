"""Numbers as a reader wants them in CLI output and reports: durations, and docstring text as
plain text. Files (metrics.jsonl, eval JSON) keep full precision; only printed text goes here."""

from __future__ import annotations

import math
import re
from fractions import Fraction


def format_duration(seconds: float) -> str:
    """``0.42 s``, ``12.3 s``, ``4 min 05 s``, ``1 h 02 min``: the precision a reader uses.

    Below a minute, tenths of a second (hundredths below one second); from a minute, whole
    seconds; from an hour, whole minutes. Rounding carries over: 59.97 s is ``1 min 00 s``.
    """
    if not math.isfinite(seconds):
        return "n/a"
    seconds = max(0.0, float(seconds))
    if seconds < 1 and round(seconds, 2) < 1:
        return f"{seconds:.2f} s"
    if round(seconds, 1) < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


def format_bytes(count: float) -> str:
    """``3.2 MB``, ``640 kB``, ``12 B``: decimal units, three significant digits."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(count) >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count:.0f} B"


def format_eps(eps: float) -> str:
    """``0.03137 (8/255)`` when eps is a whole number of 255ths, else ``0.1``."""
    fraction = Fraction(eps).limit_denominator(255)
    if fraction.denominator == 255 and abs(float(fraction) - eps) < 1e-9:
        return f"{eps:.4g} ({fraction.numerator}/255)"
    return f"{eps:.4g}"


# ``literal``, :role:`target` / :role:`text <target>`, `interpreted`, *emphasis*, **strong**.
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")
# Emphasis only where RST sees it: not inside words, so ``2.5*eps/steps`` stays as it is.
_EMPHASIS = re.compile(r"(?<![\w*])\*\*?([^*\s][^*]*?)(?<!\s)\*\*?(?![\w*])")


def plain_text(text: str) -> str:
    """Docstring or registry text without reStructuredText/Markdown markup, on one line."""
    text = _ROLE.sub(lambda m: _role_title(m.group(1)), text)
    text = _LITERAL.sub(lambda m: m.group(1) or m.group(2), text)
    text = _EMPHASIS.sub(lambda m: m.group(1), text)
    return " ".join(text.split())


def _role_title(content: str) -> str:
    """What Sphinx shows for a role: ``text <target>`` -> text, ``~a.b.C`` -> C, ``a.b.C``."""
    if content.endswith(">") and "<" in content:
        return content[: content.rindex("<")].strip()
    return content[1:].rsplit(".", 1)[-1] if content.startswith("~") else content


def numbered_repeats(labels: list[str]) -> list[str]:
    """``labels`` with the second, third, ... of a repeated label suffixed ``-2``, ``-3``: one
    distinct name per row of a table of runs."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label}-{seen[label]}")
    return unique
