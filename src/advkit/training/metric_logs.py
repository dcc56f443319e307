"""Per-epoch metrics where people already look: TensorBoard event files and a CSV table.

``--log tensorboard`` writes every numeric entry of each epoch's record (train and validation
metrics, learning rate, eps, the communication figures) as a scalar at step = epoch, in
``<run>/tensorboard``, through torch's ``SummaryWriter`` (the optional ``tensorboard`` package:
``pip install 'advkit[tensorboard]'``). ``--log csv`` keeps ``<run>/metrics.csv``, one row per
epoch, rewritten whole like metrics.jsonl. After a resume the TensorBoard log is purged back to
the checkpoint (``purge_step``) and the history logged again, so no epoch appears twice.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from advkit.errors import UserError
from advkit.files import write_text

LOGS = ("csv", "tensorboard")
TENSORBOARD_DIR = "tensorboard"
CSV_FILE = "metrics.csv"


class LogError(UserError, RuntimeError):
    """A --log choice that cannot work here."""


def check_logs(logs: list[str] | None) -> None:
    """Refuse unknown names and a missing TensorBoard, before any training."""
    for name in logs or []:
        if name not in LOGS:
            raise LogError(f"--log must be one of {', '.join(LOGS)}, got {name!r}")
    if "tensorboard" in (logs or []):
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise LogError(
                "--log tensorboard needs the tensorboard package: pip install "
                "'advkit[tensorboard]' (or drop --log tensorboard)"
            ) from None


class MetricLogs:
    """The extra logs of one run folder (nothing when ``logs`` is empty)."""

    def __init__(self, run_dir: Path, logs: list[str] | None) -> None:
        self.run_dir = run_dir
        self.logs = list(logs or [])
        self._board: Any = None
        self._logged = 0

    def write(self, records: list[dict[str, Any]]) -> None:
        """Bring every log up to ``records`` (the whole history so far)."""
        if "csv" in self.logs:
            self._write_csv(records)
        if "tensorboard" in self.logs:
            self._write_board(records)

    def _write_csv(self, records: list[dict[str, Any]]) -> None:
        columns = list(dict.fromkeys(k for r in records for k, v in r.items() if _cell(v)))
        text = io.StringIO()
        table = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        table.writeheader()
        table.writerows(records)
        write_text(self.run_dir / CSV_FILE, text.getvalue())

    def _write_board(self, records: list[dict[str, Any]]) -> None:
        if self._board is None:
            from torch.utils.tensorboard import SummaryWriter

            # A new process (a fresh run or a resume) logs the whole history again after
            # purging whatever an earlier process logged: an epoch is never there twice.
            self._board = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=1)
        for record in records[self._logged :]:
            for key, value in record.items():
                if key != "epoch" and _number(value):
                    self._board.add_scalar(key, value, global_step=record["epoch"])
        self._logged = len(records)
        self._board.flush()

    def close(self) -> None:
        if self._board is not None:
            self._board.close()
            self._board = None


def _number(value: Any) -> bool:
    """A value TensorBoard plots (the flags, e.g. ``diverged``, are not)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _cell(value: Any) -> bool:
    """A value one CSV cell holds (not the per-check lists such as ``co_checks``)."""
    return isinstance(value, int | float | str)
