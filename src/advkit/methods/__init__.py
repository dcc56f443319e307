"""Training methods, one file each, all on the contract of ``advkit.methods.base``."""

from advkit.methods import (  # noqa: F401  (registration)
    consistency,
    fast,
    free,
    gaussian,
    gradalign,
    ibp,
    macer,
    natural,
    pgd,
    smoothadv,
    trades,
)
from advkit.methods.base import METHODS, Method, StepContext, StepOutput

__all__ = ["METHODS", "Method", "StepContext", "StepOutput"]
