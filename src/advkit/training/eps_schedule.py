"""The training eps over the run: a linear ramp from 0 at the start (a curriculum), then full.

Adversarial training from random weights at the full eps can collapse to a constant guess that
never recovers (the loss sits at ln C from the first epoch: PGD-3 at eps 0.1 on MNIST, 4 epochs,
ends at 10%); ramping eps up from 0 lets the model learn the task before the attack is at full
strength (curriculum adversarial training; Cai et al. 2018, arXiv:1805.04807, and the MNIST
recipes of Wong et al. 2020 and Gowal et al. 2019). Measured in BENCHMARKS.md ("Training with
the defaults"): unset, the ramp covers ``AUTO_FRACTION`` of the passes, at most
``AUTO_MAX_EPOCHS``; 0 turns it off.
"""

from __future__ import annotations

#: Share of the passes an unset ramp covers.
AUTO_FRACTION = 0.25
#: Longest unset ramp, in passes over the data.
AUTO_MAX_EPOCHS = 5.0


def warmup_epochs(configured: float | None, passes: int) -> float:
    """The ramp's length in passes: as configured, else the automatic one for ``passes``."""
    if configured is not None:
        return configured
    return min(AUTO_FRACTION * passes, AUTO_MAX_EPOCHS)


def ramped_eps(eps: float, warmup: float, progress: float, hold: float = 0.0) -> float:
    """eps after ``progress`` passes (fractional; the current batch counted as done): 0 for the
    first ``hold`` passes (IBP's warm-up, Gowal et al. 2018), then ramped linearly over
    ``warmup`` passes."""
    progress -= hold
    if progress <= 0 and hold > 0:
        return 0.0
    if warmup <= 0:
        return eps
    return eps * min(1.0, progress / warmup)
