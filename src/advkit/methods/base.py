"""The training-method contract: one object, one ``step`` function.

The trainer owns the loop, the optimizer, the schedule and the bookkeeping; a method only turns a
batch into weight updates. It never calls ``optimizer.step()`` itself: it hands its loss to
``ctx.optimize(loss)``, which the trainer implements as zero-grad, backward, clip, optimizer step
and LR-schedule step. A method that updates the weights several times per batch (Free-AT) calls
``optimize`` several times and says so in ``updates_per_batch`` so the schedule is sized right.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from advkit.noise import GLOBAL_NOISE, Noise
from advkit.registry import Registry

METHODS: Registry[type[Method]] = Registry("training method")

#: Config options that only some methods take, with their unset values: given to a method that
#: does not take them, they are refused rather than ignored.
SOME_METHODS_OPTIONS: dict[str, Any] = {
    "sigma": None, "noise_clip": False, "num_noise": None, "consistency_lambda": None,
    "consistency_eta": None, "macer_lambda": None, "macer_gamma": None, "macer_beta": None,
    "macer_deferred_epochs": None, "kappa": 0.5, "bounds": "ibp",
}  # fmt: skip


def _not_taken(name: str, config: Any) -> str:
    """The one-line refusal of option ``name`` given to a method that does not take it."""
    from advkit.config_values import flag_name

    takers = [n for n in METHODS.names() if name in METHODS.get(n).config_kwargs(config)]
    said = " and ".join([", ".join(takers[:-1]), takers[-1]] if len(takers) > 1 else takers)
    return (
        f"{flag_name(name)} is an option of {said} training; method "
        f"{config.method} does not take it: drop it"
    )


@dataclass
class StepContext:
    """What the trainer gives a method for one batch.

    Attributes:
        model: the module whose loss updates the weights (DDP-wrapped when distributed).
        attack_model: the same weights, unwrapped: attacks run on it so their passes never go
            through DDP's gradient hooks.
        optimize: ``optimize(loss)`` does zero-grad, backward, clipping, optimizer and LR step.
            It may also backpropagate into tensors that require grad besides the weights (Free-AT
            reads its perturbation's gradient from the same backward). Under ``--amp-dtype
            fp16`` that backward is loss-scaled: such a gradient comes multiplied by a positive
            scale (its sign and direction unchanged) and may hold inf or NaN on an update the
            scaler skips. Attacks' input gradients (``advkit.attacks.gradients``) come unscaled.
        eps: the perturbation radius for this step, in pixel units, after any eps warm-up.
        epoch: 0-based epoch. step: 0-based index of the batch in the whole run.
        noise: the source of the step's random draws (attack starts). The trainer keys it to the
            run's seed, the step and each sample's dataset index, so a sample gets the same draws
            on whichever worker holds it; outside the trainer it is torch's global RNG.
    """

    model: nn.Module
    attack_model: nn.Module
    optimize: Callable[[Tensor], None]
    eps: float
    epoch: int = 0
    step: int = 0
    noise: Noise = GLOBAL_NOISE


@dataclass
class StepOutput:
    """A step's result: the (detached) training loss, the logits it was computed from (for the
    running train accuracy) and any extra scalar metrics (e.g. the GradAlign regularizer)."""

    loss: Tensor
    logits: Tensor
    metrics: dict[str, Tensor] = field(default_factory=dict)


class Method(ABC):
    """A training method. Subclasses register with ``@METHODS.register(name, description=...)``,
    the description a plain one-line sentence for ``advkit methods`` (paper and year).

    Hyperparameters come in through ``__init__`` as keyword arguments named as in the papers;
    ``from_config`` picks them from a training config. Anything that persists across steps goes
    into ``state_dict`` so a resumed run continues exactly.
    """

    #: how many times ``step`` calls ``ctx.optimize`` per batch (sizes the LR schedule).
    updates_per_batch: int = 1
    #: whether the method attacks its inputs (False for natural training and for the
    #: randomized-smoothing methods without an attack): the best epoch is then chosen by clean
    #: validation accuracy instead of PGD accuracy.
    adversarial: bool = True
    #: whether the model also sees Gaussian noise on its inputs (randomized-smoothing training):
    #: those inputs leave the eps-ball and, unless clipped, the [0, 1] box.
    input_noise: bool = False

    def __init__(self, *, norm: str = "linf", label_smoothing: float = 0.0) -> None:
        self.norm = norm
        self.label_smoothing = label_smoothing
        #: multiplies every attack step size; the catastrophic-overfitting guard shrinks it.
        self.step_scale = 1.0

    def scale_step_size(self, factor: float) -> None:
        """Shrink (or grow) the method's attack step size, e.g. after catastrophic overfitting."""
        self.step_scale *= factor

    @classmethod
    def from_config(cls, config: Any) -> Method:
        """Build the method from a training config (see ``advkit.config.TrainConfig``). A config
        value of None (e.g. ``steps``, ``step_size``) leaves the method's own default."""
        from advkit.config import ConfigError

        kwargs = cls.config_kwargs(config)
        if getattr(config, "clean_weight", 0) and "clean_weight" not in kwargs:
            raise ConfigError(
                f"--clean-weight adds a clean loss to pgd and fast training; method "
                f"{config.method} does not take it (trades weighs its terms with --beta): drop it"
            )
        for name, unset in SOME_METHODS_OPTIONS.items():
            if getattr(config, name, unset) != unset and name not in kwargs:
                raise ConfigError(_not_taken(name, config))
        return cls(**{name: value for name, value in kwargs.items() if value is not None})

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        """The keyword arguments this method takes from a config; subclasses extend this."""
        return {"norm": config.norm, "label_smoothing": config.label_smoothing}

    @abstractmethod
    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        """Train on one batch of inputs in [0, 1] with integer labels."""

    def criterion(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The loss that updates the weights (mean cross-entropy with label smoothing)."""
        return F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)

    def adversarial_loss(
        self, model: nn.Module, inputs: Tensor, adv_inputs: Tensor, labels: Tensor,
        clean_weight: float = 0.0,
    ) -> tuple[Tensor, Tensor, dict[str, Tensor]]:  # fmt: skip
        """The loss on ``adv_inputs``, plus ``clean_weight`` times the loss on the clean
        ``inputs`` (DAT's objective, Zhang et al. UAI 2022: lambda * l(x) + l(x + delta); 0 is
        Madry's). Both forwards go through ``model``, so one backward synchronizes both terms.
        Returns (loss, adversarial logits, metrics)."""
        logits = model(adv_inputs)
        loss = self.criterion(logits, labels)
        if not clean_weight:
            return loss, logits, {}
        clean_loss = self.criterion(model(inputs), labels)
        return loss + clean_weight * clean_loss, logits, {"clean_loss": clean_loss.detach()}

    def describe(self) -> dict[str, Any]:
        """Hyperparameters for the run metadata (model.json)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def state_dict(self) -> dict[str, Any]:
        """State that persists across steps; subclasses extend it (call super)."""
        return {"step_scale": self.step_scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_scale = float(state.get("step_scale", 1.0))
