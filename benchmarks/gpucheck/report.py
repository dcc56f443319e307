"""The results: a line per check as it ends, a table at the end, and ``report.json``."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from gpucheck.runner import FAIL, Result


def fresh_folder(parent: Path) -> Path:
    """A new folder ``parent/<date>-<time>[-N]``: a report never replaces another."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1, 1000):
        folder = parent / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"no free folder name under {parent}")


def progress_line(index: int, total: int, result: Result) -> str:
    width = len(str(total))
    return (
        f"[{index:>{width}}/{total}] {result.name:<22} {result.status:<7} {result.seconds:7.1f} s"
    )


def table(results: list[Result]) -> str:
    """Check, status, seconds and a one-line note (a failure's first line: its output follows)."""
    width = max([len("check"), *(len(r.name) for r in results)])
    lines = [f"{'check':<{width}}  status   seconds  note", "-" * (width + 40)]
    for r in results:
        note = r.detail.splitlines()[0] if r.detail else ""
        lines.append(f"{r.name:<{width}}  {r.status:<7} {r.seconds:8.1f}  {note}")
    passed = sum(r.status == "pass" for r in results)
    failed = sum(r.status == FAIL for r in results)
    lines.append(f"{passed} passed, {failed} failed, {len(results) - passed - failed} skipped")
    return "\n".join(lines)


def failures(results: list[Result]) -> str:
    """Each failed check's command and the tail of its output."""
    blocks = []
    for r in results:
        if r.status == FAIL:
            body = "\n".join("    " + line for line in r.detail.splitlines())
            blocks.append(f"FAILED {r.name}: {r.command}\n{body}")
    return "\n\n".join(blocks)


def environment(device: str) -> dict[str, Any]:
    """Where the checks ran: the GPU (or CPU), torch, CUDA, advkit."""
    import torch

    import advkit

    return {
        "device": device,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available()
        else [],
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "advkit": advkit.__version__,
        "advkit_source": str(Path(advkit.__file__).resolve().parent),
        "python": platform.python_version(),
        "host": platform.node(),
        "cpus": os.cpu_count(),
    }


def write_report(folder: Path, report: dict[str, Any]) -> Path:
    path = folder / "report.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
