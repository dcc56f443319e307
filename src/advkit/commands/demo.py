"""``advkit demo``: the embedded default, adversarial training on Fashion-MNIST then evaluation.

Re-running it continues an interrupted run from its checkpoint, or re-evaluates a finished one.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

from advkit import runs
from advkit.commands.train import summarize
from advkit.config import load_config
from advkit.evaluation import SUITES
from advkit.recipes import recipe_path
from advkit.runlock import hold_run
from advkit.training import Trainer, TrainingInterrupted, train
from advkit.training.progress import training_plan

DEMO_RECIPE = "fashion-mnist-demo"
WHY = (
    "Free-AT, m = 4: of the recipes that train in about 3 CPU-minutes (Free-2/4/8, fast FGSM), "
    "the highest worst-case robust accuracy in BENCHMARKS.md, here with twice that budget"
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="adversarially train a small CNN on Fashion-MNIST, then evaluate it",
        description="Train with the recipe advkit/recipes/fashion-mnist-demo.yaml (Free-AT "
        "with m=4 at eps=0.1 on the CPU), then evaluate clean and PGD-20 accuracy on "
        "the test set. An interrupted demo resumes; a finished one is only re-evaluated.",
    )  # fmt: skip
    parser.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    parser.add_argument("--fresh", action="store_true", help="train again even if finished")
    parser.add_argument("--suite", default="quick", choices=SUITES.names(),
                        help="evaluation suite (default quick; see advkit eval -h)")  # fmt: skip
    parser.add_argument("--n-examples", type=int, default=10000,
                        help="test images to evaluate (count, default all 10000)")  # fmt: skip
    parser.add_argument("--data-dir", help="folder holding Fashion-MNIST's idx files "
                        "(default $ADVKIT_DATA or /usr/share/datasets/fashion-mnist)")  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Train (or resume) then evaluate, holding the run folder throughout."""
    with hold_run(args.out, "advkit demo", hint=" or choose another --out"):
        return _demo(args)


def _demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    overrides = {"quiet": args.quiet or None, "data_dir": args.data_dir}
    config = load_config(recipe_path(DEMO_RECIPE), {k: v for k, v in overrides.items() if v})
    finished = (out / runs.MODEL_FILE).is_file() and (out / runs.META_FILE).is_file()
    checkpoint = out / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT
    print(f"advkit demo: recipe {DEMO_RECIPE}\n  ({WHY})")
    if finished and not args.fresh:
        print(f"{out} holds a finished run: evaluating it (use --fresh to train again)")
    else:
        # What will run, from the resolved config and method, not the recipe's raw keys (whose
        # epochs=48 are the Free-AT paper's epochs: 12 passes). The planning trainer loads the
        # data once for both; training itself goes through train() like `advkit train`.
        planned = Trainer(config)
        print(textwrap.indent(training_plan(planned), "  "))
        if args.fresh and out.exists():
            for name in (runs.MODEL_FILE, runs.META_FILE):
                (out / name).unlink(missing_ok=True)
            checkpoint.unlink(missing_ok=True)
        resume = checkpoint.is_file()
        if resume:
            print(f"resuming the interrupted demo run in {out}")
        try:
            result = train(config, out, resume=resume, data=planned.data)
        except TrainingInterrupted as stopped:
            print(f"advkit demo: {stopped} (or run `advkit demo` again)", file=sys.stderr)
            return 130
        print(summarize(result.metadata, out))
    from advkit.cli import build_parser

    eval_argv = ["eval", str(out), "--suite", args.suite, "--n-examples", str(args.n_examples)]
    if args.data_dir:
        eval_argv += ["--data-dir", args.data_dir]
    if args.quiet:
        eval_argv.append("--quiet")
    eval_args = build_parser().parse_args(eval_argv)
    return int(eval_args.handler(eval_args) or 0)
