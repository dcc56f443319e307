"""Training methods, one file each, all on the contract of ``advkit.methods.base``."""

from advkit.methods import fast, free, gradalign, ibp, natural, pgd, trades  # noqa: F401  (registration)
from advkit.methods.base import METHODS, Method, StepContext, StepOutput

__all__ = ["METHODS", "Method", "StepContext", "StepOutput"]
