"""Signs that a run cannot learn or has not learned, said at the epoch they show.

A finding is a dict ``{"kind", "epoch", "message"}``. Before the first step
(:func:`start_findings`): a training set with fewer classes than the model has outputs
(``missing_classes``), a validation split of one class, whose accuracy says nothing
(``one_class_validation``), and outputs that are probabilities instead of logits
(``probability_outputs``). After every epoch (:func:`epoch_findings`): a model no better than a
constant guess (``not_learning``): a training loss at the entropy of the labels (ln C for C
balanced classes) and a clean accuracy not above the largest class's share.

The trainer logs each finding as a warning, keeps it in the epoch's record of metrics.jsonl
(``health``), and model.json sums them up (:func:`summarize`) for the end-of-run report.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import Tensor, nn

from advkit.models.output_checks import PROBABILITY_ADVICE, looks_like_probabilities

#: A loss at least this fraction of the labels' entropy counts as "at the constant guess's".
LOSS_FRACTION = 0.98
#: Standard errors above the chance accuracy that an accuracy must reach to count as learning.
CHANCE_SIGMAS = 3.0

Finding = dict[str, Any]

log = logging.getLogger("advkit.train")


def finding(kind: str, epoch: int, message: str) -> Finding:
    return {"kind": kind, "epoch": epoch, "message": message}


def class_shares(labels: Tensor, num_classes: int) -> Tensor:
    """Each class's share of ``labels`` (C,), float64."""
    counts = torch.bincount(labels.detach().cpu().long().clamp_min(0), minlength=num_classes)
    return counts[:num_classes].double() / max(len(labels), 1)


def label_entropy(shares: Tensor) -> float:
    """The cross-entropy of the best constant guess: the labels' entropy (ln C when balanced)."""
    positive = shares[shares > 0]
    return float(-(positive * positive.log()).sum())


def start_findings(
    model: nn.Module,
    probe: Tensor,
    train_labels: Tensor,
    val_labels: Tensor,
    num_classes: int,
    class_names: list[str] | None = None,
) -> list[Finding]:
    """What is wrong before the first step: classes absent from the training labels, a
    one-class validation split, probability outputs on ``probe`` (a few inputs, eval mode)."""
    found = []
    seen = class_shares(train_labels, num_classes) > 0
    present = int(seen.sum())
    if present < num_classes:
        missing = (~seen).nonzero().flatten().tolist()
        names = [class_names[i] for i in missing] if class_names else missing
        shown = ", ".join(map(str, names[:8])) + (", ..." if len(names) > 8 else "")
        found.append(finding(
            "missing_classes", 0,
            f"the training set holds {present} of the model's {num_classes} classes (none of "
            f"{shown}): the model cannot learn the others and its accuracy on real data is at "
            "most the share of the classes it saw; check the labels, --subset or the data's "
            "class folders",
        ))  # fmt: skip
    if len(val_labels) and int((class_shares(val_labels, num_classes) > 0).sum()) == 1:
        found.append(finding(
            "one_class_validation", 0,
            f"the validation split holds one class only ({len(val_labels)} examples): its "
            "accuracy says nothing of the model, and model selection by it is blind; hold out a "
            "split with every class (--val-size, or val_data=)",
        ))  # fmt: skip
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(probe)
    finally:
        model.train(was_training)
    if looks_like_probabilities(outputs):
        found.append(finding(
            "probability_outputs", 0,
            f"{PROBABILITY_ADVICE}: training applies softmax and cross-entropy to them again, "
            "whose gradients nearly vanish, so the model stays near chance; remove the final "
            "softmax so the model returns logits",
        ))  # fmt: skip
    return found


def epoch_findings(
    record: dict[str, Any], train_shares: Tensor, val_shares: Tensor | None, val_count: int
) -> list[Finding]:
    """``not_learning`` when the epoch's training loss is at the constant guess's and its clean
    accuracy (validation's, else training's) is within ``CHANCE_SIGMAS`` standard errors of the
    largest class's share."""
    loss = record.get("train_loss")
    if loss is None or not math.isfinite(loss):
        return []  # a diverged epoch is said by the trainer
    floor = label_entropy(train_shares)
    if floor <= 0 or loss < LOSS_FRACTION * floor:
        return []
    count = val_count if record.get("val_clean") is not None and val_shares is not None else 0
    if count:
        which, accuracy, chance = "validation clean accuracy", record["val_clean"], val_shares
    else:  # no validation split: the training accuracy against the training labels
        which, accuracy, chance = "training accuracy", record["train_acc"], train_shares
    chance = float(chance.max())
    spread = CHANCE_SIGMAS * math.sqrt(chance * (1 - chance) / count) if count else 0.02
    if accuracy > chance + spread:
        return []
    return [finding(
        "not_learning", record["epoch"],
        f"the model is not learning: training loss {loss:.3f} is the constant guess's "
        f"({floor:.3f}{' = ln C' if abs(floor - math.log(len(train_shares))) < 1e-6 else ''}) "
        f"and {which} {100 * accuracy:.1f}% is within noise of chance ({100 * chance:.1f}%, the "
        "largest class's share); ramp eps up from 0 (--eps-warmup-epochs), lower --lr, or check "
        "the labels",
    )]  # fmt: skip


def summarize(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """model.json's ``health``: each kind of finding once, with the epochs it was seen in and its
    latest message; ``still`` when it held at the run's last epoch."""
    kinds: dict[str, dict[str, Any]] = {}
    last = history[-1]["epoch"] if history else 0
    for record in history:
        for item in record.get("health", []):
            entry = kinds.setdefault(item["kind"], {"kind": item["kind"], "epochs": []})
            entry["epochs"].append(item["epoch"])
            entry["message"] = item["message"]
    for entry in kinds.values():
        entry["still"] = entry["epochs"][-1] in (0, last)
    return list(kinds.values())


class RunHealth:
    """A run's findings: those before the first step wait for epoch 1's record; each epoch's
    join its own. Only the writer (``announce``) logs them."""

    def __init__(
        self, train_labels: Tensor, val_labels: Tensor, num_classes: int,
        class_names: list[str] | None = None, *, announce: bool = True,
    ) -> None:  # fmt: skip
        self.train_labels = train_labels
        self.val_labels = val_labels
        self.num_classes = num_classes
        self.class_names = class_names
        self.announce = announce
        self.train_shares = class_shares(train_labels, num_classes)
        self.val_shares = class_shares(val_labels, num_classes) if len(val_labels) else None
        self.pending: list[Finding] = []

    def at_start(self, model: nn.Module, val: Any, input_shape: tuple[int, ...]) -> None:
        """Check the data and the model before the first epoch's record exists; the model's
        outputs are looked at on a few validation images (``val``, a TensorData), else grey
        images."""
        device = next((t.device for t in (*model.parameters(), *model.buffers())), None)
        probe = (
            val.inputs(slice(0, 64)) if len(val)
            else torch.full((2, *input_shape), 0.5, device=device)
        )  # fmt: skip
        self.pending = start_findings(
            model, probe, self.train_labels, self.val_labels, self.num_classes, self.class_names
        )
        self._log(self.pending, "before training")

    def after_epoch(self, record: dict[str, Any]) -> None:
        """Add the epoch's findings (and any waiting from the start) to ``record["health"]``."""
        found = epoch_findings(record, self.train_shares, self.val_shares, len(self.val_labels))
        self._log(found, f"after epoch {record['epoch']}")
        found = self.pending + found
        self.pending = []
        if found:
            record["health"] = found

    def _log(self, found: list[Finding], when: str) -> None:
        if self.announce:
            for item in found:
                log.warning("%s: %s", when, item["message"])
