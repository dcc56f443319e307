"""A progress bar over an epoch's batches showing loss, accuracy, LR and images/s.

Quiet when stderr is not a terminal (CI, logs) or when asked; postfix updates read tensors back
from the device only every ``refresh`` steps so the bar costs no synchronization in between.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from tqdm import tqdm


class Progress:
    def __init__(
        self, total: int, initial: int = 0, desc: str = "", disable: bool = False,
        refresh: int = 20,
    ) -> None:  # fmt: skip
        self.disable = disable or not sys.stderr.isatty()
        self.refresh = refresh
        self._bar = None if self.disable else tqdm(
            total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True
        )  # fmt: skip
        self._steps = 0
        self._images = 0
        self._started = time.perf_counter()

    def update(self, totals: Any, lr: float, batch_images: int) -> None:
        if self._bar is None:
            return
        self._steps += 1
        self._images += batch_images
        self._bar.update(1)
        if self._steps % self.refresh == 0:
            seen = max(totals.seen, 1)
            rate = self._images / max(time.perf_counter() - self._started, 1e-9)
            self._bar.set_postfix(
                loss=f"{totals.loss.item() / seen:.3f}", acc=f"{totals.correct.item() / seen:.3f}",
                lr=f"{lr:.3g}", img_s=f"{rate:.0f}",
            )  # fmt: skip

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
