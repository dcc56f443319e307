"""What a resumed run may change of its configuration, and the message refusing the rest."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import TYPE_CHECKING, Any

from advkit.config_values import ConfigError, flag_name, shown_value

if TYPE_CHECKING:
    from advkit.config import TrainConfig

#: Fields a resumed run may change: where, how and how long it runs, never what it trains.
#: ``data_loading``/``data_workers``: both paths give the same batches (``training.data_feed``).
#: ``epochs``: the LR schedule is then spread over the new total of updates from the current one
#: on (see ``Trainer.resume``); fewer epochs than already trained are refused there.
#: ``co_check_every`` only while the guard merely measures (off/warn): when it rolls back or
#: stops, its checks steer the run. The ``track_*`` measurements never steer it: epochs before
#: the change simply lack (or keep) their metrics.
RESUMABLE_FIELDS = frozenset(
    {"epochs", "data_dir", "out", "device", "quiet", "checkpoint_every", "compile",
     "channels_last", "co_check_every", "dist_backend", "log", "track_train_sample",
     "track_test_sample", "track_grad_align", "data_loading", "data_workers"}
)  # fmt: skip

#: What of the run the other fields define, for the message refusing their change on resume.
_RUN_DEFINES = {
    "data": "dataset val_size subset augment",
    "model": "model model_args normalize sync_bn",
    "threat model": "norm eps eps_warmup_epochs eps_hold_epochs steps step_size init",
    "method": "method replays paper_epochs grad_align_lambda beta label_smoothing "
    "attack_train_mode clean_weight sigma noise_clip num_noise consistency_lambda "
    "consistency_eta macer_lambda macer_gamma macer_beta macer_deferred_epochs kappa bounds",
    "optimization": "batch_size optimizer lr lr_scaling base_batch_size lalr_base lalr_clip "
    "lalr_exclude_1d momentum nesterov weight_decay schedule warmup_epochs grad_clip ema_decay "
    "amp amp_dtype",
    "gradient exchange": "grad_compression powersgd_rank error_feedback",
    "seed": "seed",
    "validation and guard": "val_examples val_steps select co_guard co_drop co_check_every "
    "co_step_factor co_max_rollbacks",
}
_DEFINED_BY = {name: what for what, names in _RUN_DEFINES.items() for name in names.split()}


def resume_changes(saved: TrainConfig, new: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """What ``new`` changes of a run whose config is ``saved``, as {field: (old, new)}.

    Only :data:`RESUMABLE_FIELDS` may differ; any other field given another value raises a
    ConfigError naming the option and both values (the same value as the run's is no change).
    """
    resumable = set(RESUMABLE_FIELDS)
    if saved.co_guard not in ("off", "warn"):
        resumable.discard("co_check_every")
    changes, refused = {}, []
    for name in (f.name for f in fields(saved)):
        old, value = getattr(saved, name), getattr(new, name)
        if _same(old, value):
            continue
        if name in resumable:
            changes[name] = (old, value)
        else:
            refused.append(name)
    if refused:
        first, *rest = refused
        said = [f"{flag_name(first)} {shown_value(getattr(new, first))} differs from the run's "
                f"{shown_value(getattr(saved, first))}"]  # fmt: skip
        said += [f"{flag_name(n)} {shown_value(getattr(new, n))} from its "
                 f"{shown_value(getattr(saved, n))}" for n in rest]  # fmt: skip
        kept = list(dict.fromkeys(_DEFINED_BY.get(n, "configuration") for n in refused))
        kept_text = " and ".join([", ".join(kept[:-1]), kept[-1]] if len(kept) > 1 else kept)
        raise ConfigError(
            f"{', '.join(said)}: a resumed run keeps its {kept_text}; start a new run with --out"
        )
    return changes


def _same(old: Any, new: Any) -> bool:
    if isinstance(old, float) and isinstance(new, float):
        return math.isclose(old, new, rel_tol=1e-12, abs_tol=0.0)
    return old == new
