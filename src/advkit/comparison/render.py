"""A comparison as Markdown, CSV or LaTeX, and the file it is written to.

Markdown and LaTeX show percentages with one decimal and the interval beside each value, its
bounds rounded outwards so that the printed interval never shrinks; the best value of each column
is bold. CSV keeps fractions in [0, 1] at full precision, with ``_low``/``_high`` columns.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

from advkit.comparison.conditions import condition_value
from advkit.comparison.select import CompareError
from advkit.comparison.table import LABELS, WORST, Cell, Comparison, Row

FORMATS = {"markdown": ".md", "csv": ".csv", "latex": ".tex"}
#: What a cell shows for an accuracy a run does not have.
ABSENT = "—"
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}  # fmt: skip


def header(column: str) -> str:
    return "worst case" if column == WORST else LABELS.get(column, column)


def percent(value: float) -> str:
    return f"{value * 100:.1f}"


def interval(cell: Cell) -> str:
    """``[82.0, 83.5]``: the bounds in %, rounded outwards to one decimal."""
    low = math.floor(round(cell.low * 1000, 6)) / 10
    high = math.ceil(round(cell.high * 1000, 6)) / 10
    return f"[{low:.1f}, {high:.1f}]"


def to_markdown(table: Comparison) -> str:
    columns = [*table.label_columns, *table.accuracy_columns]
    lines = [
        "| " + " | ".join(_md(header(c)) for c in columns) + " |",
        "|" + "|".join("---" for _ in table.label_columns)
        + ("|" if table.label_columns and table.accuracy_columns else "")
        + "|".join("---:" for _ in table.accuracy_columns) + "|",
    ]  # fmt: skip
    for row in table.rows:
        cells = [_md(row.label_value(c)) for c in table.label_columns]
        for column in table.accuracy_columns:
            cell = row.cells.get(column)
            if cell is None:
                cells.append(ABSENT)
                continue
            value = percent(cell.value)
            best = table.best(column)
            cells.append(f"{f'**{value}**' if best == cell.value else value} {interval(cell)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *(f"- {note}" for note in table.notes)]) + "\n"


def to_latex(table: Comparison) -> str:
    columns = [*table.label_columns, *table.accuracy_columns]
    spec = "l" * len(table.label_columns) + "r" * len(table.accuracy_columns)
    lines = ["% Written by advkit compare; needs \\usepackage{booktabs}."]
    lines += [f"% - {note}" for note in table.notes]
    lines += [
        rf"\begin{{tabular}}{{{spec}}}",
        r"\toprule",
        " & ".join(_tex(header(c)) for c in columns) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        cells = [_tex(row.label_value(c)) for c in table.label_columns]
        for column in table.accuracy_columns:
            cell = row.cells.get(column)
            if cell is None:
                cells.append("--")
                continue
            value = percent(cell.value)
            shown = rf"\textbf{{{value}}}" if table.best(column) == cell.value else value
            cells.append(rf"{shown} {{\footnotesize {interval(cell)}}}")
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Comparison) -> str:
    fields = _csv_fields(table)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    names = [name for name, _ in fields]
    for column in table.accuracy_columns:
        names += [column, f"{column}_low", f"{column}_high"]
    writer.writerow(names)
    for row in table.rows:
        values = [value(row) for _, value in fields]
        for column in table.accuracy_columns:
            cell = row.cells.get(column)
            values += [cell.value, cell.low, cell.high] if cell else ["", "", ""]
        writer.writerow(values)
    return buffer.getvalue()


def render(table: Comparison, fmt: str) -> str:
    """The table in ``fmt``: markdown, csv or latex."""
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "csv":
        return to_csv(table)
    if fmt == "latex":
        return to_latex(table)
    raise CompareError(f"unknown format {fmt!r}: choose markdown, csv or latex")


def format_for(path: Path, fmt: str | None) -> str:
    """The format asked for, else the one the suffix names; a clash is refused."""
    by_suffix = next((name for name, suffix in FORMATS.items() if path.suffix == suffix), None)
    if fmt is None and by_suffix is None:
        raise CompareError(
            f"cannot tell the format of {path} from its suffix: name it .md, .csv or .tex, or "
            "give --format markdown|csv|latex"
        )
    if fmt is not None and by_suffix is not None and fmt != by_suffix:
        raise CompareError(
            f"--format {fmt} does not fit {path.name}: name the file {path.stem}{FORMATS[fmt]} "
            "or leave --format out"
        )
    return fmt or str(by_suffix)


def write_table(table: Comparison, path: Path, fmt: str | None, *, force: bool) -> Path:
    """Write the table atomically (a reader never sees half a file); an existing file stays
    unless ``force``."""
    text = render(table, format_for(path, fmt))
    if path.is_dir():
        raise CompareError(f"{path} is a folder: give a file name such as {path / 'compare.md'}")
    if path.exists() and not force:
        raise CompareError(f"{path} exists: choose another --out, or pass --force to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        if force:
            os.replace(temp, path)
        else:
            _link_new(temp, path)
    except OSError as error:  # named by the file asked for, not the temporary one
        raise OSError(error.errno, error.strerror, str(path)) from error
    finally:
        temp.unlink(missing_ok=True)
    return path


def _link_new(temp: Path, path: Path) -> None:
    """Put ``temp`` at ``path`` only if nothing is there (a link fails on an existing name; a
    file system without hard links gets a check, then a rename)."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise CompareError(
            f"{path} exists: choose another --out, or pass --force to replace it"
        ) from None
    except OSError:
        if path.exists():
            raise CompareError(
                f"{path} exists: choose another --out, or pass --force to replace it"
            ) from None
        os.replace(temp, path)


def _csv_fields(table: Comparison) -> list[tuple[str, object]]:
    """(name, value of a row) for the descriptive CSV columns: all of them, or those chosen."""
    every = {
        "run": [("run", lambda r: r.label)],
        "method": [("method", lambda r: r.label_value("method"))],
        "train_eps": [
            ("train_norm", lambda r: r.run.train_threat[0] if r.run.train_threat else ""),
            ("train_eps", lambda r: r.run.train_threat[1] if r.run.train_threat else ""),
        ],
        "model": [("model", lambda r: r.label_value("model"))],
        "dataset": [("dataset", lambda r: _data(r, "dataset"))],
        "suite": [("suite", lambda r: _data(r, "suite"))],
        "eps": [("norm", lambda r: _data(r, "norm")), ("eps", lambda r: _data(r, "eps"))],
        "examples": [("n_examples", lambda r: _data(r, "n_examples"))],
        "confidence": [("confidence", lambda r: _data(r, "confidence"))],
    }
    chosen = table.label_columns if table.chosen else list(every)
    fields = [field for column in chosen for field in every[column]]
    if not table.chosen:
        fields += [
            ("warnings", lambda r: len(r.warnings) if r.evaluation else ""),
            ("evaluation", lambda r: str(r.evaluation.path) if r.evaluation else "missing"),
        ]
    return fields


def _data(row: Row, key: str) -> object:
    """A measuring condition's value as recorded ('' for a missing run or an unrecorded one)."""
    if row.evaluation is None:
        return ""
    if key == "dataset":
        return condition_value(row.evaluation, row.run, "dataset")[0] or ""
    return row.evaluation.data.get(key, "")


def _md(text: str) -> str:
    return text.replace("|", r"\|")


def _tex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)
