"""advkit: adversarial training and honest robustness evaluation for image classifiers.

Inputs live in [0, 1]; normalization is a layer of the model; eps is in pixel units.

    import advkit
    result = advkit.fit(my_module, (images, labels), method="pgd", eps=8 / 255, epochs=10)
    model = advkit.load_model("runs/demo")
    adv = advkit.attacks.pgd(model, images, labels, eps=0.1, steps=20)
    result = advkit.evaluate(my_module, (images, labels), eps=8 / 255, suite="paper")
    certification = advkit.certify(my_module, (images, labels), sigma=0.25, n=10_000)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "TrainConfig", "__version__", "certify", "compare", "create_model", "evaluate", "fit",
    "load_model", "smooth", "train",
]  # fmt: skip

if TYPE_CHECKING:
    from advkit.certification import certify, smooth
    from advkit.comparison import compare
    from advkit.config import TrainConfig
    from advkit.evaluation.external import evaluate
    from advkit.models import create_model
    from advkit.runs import load_model
    from advkit.training import train
    from advkit.training.fit import fit

_LAZY = {
    "TrainConfig": "advkit.config",
    "certify": "advkit.certification",
    "smooth": "advkit.certification",
    "compare": "advkit.comparison",
    "create_model": "advkit.models",
    "evaluate": "advkit.evaluation.external",
    "fit": "advkit.training.fit",
    "load_model": "advkit.runs",
    "train": "advkit.training",
}

_SUBPACKAGES = ("attacks", "certification", "data", "evaluation", "methods", "models", "training")


def __getattr__(name: str) -> Any:
    """Import the public API on first use, so ``import advkit`` stays cheap."""
    import importlib

    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"advkit.{name}")
    raise AttributeError(f"module 'advkit' has no attribute {name!r}")
