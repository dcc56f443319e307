"""Image classifiers for adversarial training, built by name through ``MODELS``.

Every model is a ``NormalizedModel``: it takes inputs in [0, 1] and normalizes them itself, so
attack budgets are always in pixel units. ``create_model(name, num_classes, mean, std, **kwargs)``
builds one; ``list_models()`` lists the names.
"""

from advkit.models import preact_resnet, resnet, small_cnns, wide_resnet  # noqa: F401 (registration)
from advkit.models.base import MODELS, Normalize, NormalizedModel, create_model, list_models

__all__ = ["MODELS", "Normalize", "NormalizedModel", "create_model", "list_models"]
