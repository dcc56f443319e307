"""``advkit certify``: randomized-smoothing certificates of a run (or of a model advkit did not
train), written as JSON, Markdown and a figure beside the run; ``--bounds ibp`` verifies
interval bounds instead (``advkit.bounds``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from advkit import runs
from advkit.certification.outputs import (
    DEFAULT_ALPHA,
    DEFAULT_EXAMPLES,
    DEFAULT_N,
    DEFAULT_N0,
    state_path,
    stem,
)
from advkit.certification.report import format_table
from advkit.certification.session import (
    DEFAULT_EMPIRICAL_EXAMPLES,
    DEFAULT_EMPIRICAL_N,
    check_parameters,
    noise_warning,
    run_certification,
)
from advkit.certification.smoothing import DEFAULT_BATCH_SIZE, CertifyArgumentError
from advkit.commands import eval_external
from advkit.commands.eval_external import add_external_options, origin_fingerprint
from advkit.commands.workers import add_worker_options
from advkit.config_values import parse_eps
from advkit.devices import resolve_device
from advkit.distributed import BACKENDS, World, close_world, init_world, worker_device
from advkit.errors import UserError
from advkit.evaluation.provenance import provenance
from advkit.run_checkpoints import outputs_folder
from advkit.run_checkpoints import title as title_of
from advkit.runlock import hold_outputs


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "certify",
        help="certify a model's L2 robustness by randomized smoothing",
        description="Randomized smoothing (Cohen et al., ICML 2019): CERTIFY every --skip-th test "
        "image (n0 draws select the class, n fresh draws bound its probability by "
        "Clopper-Pearson at level alpha, abstaining below 1/2; radius sigma * Phi^-1(bound)), "
        "then certified accuracy at each radius with its interval, the average certified "
        "radius, the largest radius n and alpha can certify, and an L2 attack on the smoothed "
        "classifier beside it. Writes cert-sigma<S>[...].json, .md and .png beside the run (or "
        "in --out), never replacing another certification; a killed certification resumes.",
    )
    parser.add_argument(
        "run",
        metavar="RUN",
        nargs="?",
        help="run folder (or give --model REF --weights FILE --dataset NAME)",
    )
    parser.add_argument("--sigma", help="noise standard deviation in [0,1] pixel units, e.g. "
                        "0.25 or 64/255 (required for --bounds smoothing)")  # fmt: skip
    parser.add_argument(
        "--n0",
        type=int,
        default=DEFAULT_N0,
        help=f"draws that select the class (count, default {DEFAULT_N0})",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=DEFAULT_N,
        help=f"draws that estimate its probability (count, default {DEFAULT_N})",
    )
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="probability that a certificate is wrong (default "
                        f"{DEFAULT_ALPHA:g})")  # fmt: skip
    parser.add_argument(
        "--n-examples",
        type=int,
        default=DEFAULT_EXAMPLES,
        metavar="N",
        help=f"certify N test images (count, default {DEFAULT_EXAMPLES})",
    )
    parser.add_argument(
        "--skip",
        type=int,
        default=1,
        metavar="K",
        help="take every K-th test image (default 1: the first N)",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="B",
                        help=f"noisy copies per forward pass (count, default "
                        f"{DEFAULT_BATCH_SIZE})")  # fmt: skip
    parser.add_argument(
        "--radii",
        metavar="LIST",
        help="radii of the table, comma-separated, L2 pixel units (default 0, "
        "0.25, 0.5, ... up to just above the largest certifiable radius)",
    )
    parser.add_argument("--empirical-examples", type=int, default=DEFAULT_EMPIRICAL_EXAMPLES,
                        metavar="K", help="attack the smoothed classifier on the first K "
                        f"certified images at each radius (default {DEFAULT_EMPIRICAL_EXAMPLES};"
                        " 0 skips it)")  # fmt: skip
    parser.add_argument("--empirical-n", type=int, default=DEFAULT_EMPIRICAL_N,
                        help="PREDICT's draws on an attacked image (count, default "
                        f"{DEFAULT_EMPIRICAL_N})")  # fmt: skip
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        metavar="C",
        help="level of the certified accuracies' exact intervals (default 0.95)",
    )
    parser.add_argument("--seed", type=int, default=0, help="keys the noise (integer, default 0)")
    parser.add_argument(
        "--bounds",
        choices=("smoothing", "ibp"),
        default="smoothing",
        help="smoothing: randomized smoothing (L2); ibp: interval bound "
        "propagation at --eps (L-inf) (default smoothing)",
    )
    parser.add_argument("--eps", help="L-inf radius of --bounds ibp, pixel units, e.g. 0.1")
    parser.add_argument("--dataset", help="test data (default: the run's; required with --model)")
    parser.add_argument("--data-dir", help="folder (or .npz file) of the dataset's files")
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: the run folder; "
        "with --model, <weights folder>/<weights stem>-eval)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="ignore saved progress of an interrupted certification",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--dist-backend",
        choices=BACKENDS,
        default="auto",
        help="torch.distributed backend with several workers (default auto)",
    )
    add_external_options(parser)
    add_worker_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Certify, holding only the outputs it writes: another certification of the same model,
    sigma and parameters is refused, naming its holder; others run side by side."""
    if args.bounds == "ibp":
        return _interval_bounds(args)
    if args.sigma is None:
        raise CertifyArgumentError("--sigma is needed: the noise level to smooth with, e.g. "
                                   "--sigma 0.25 (pixel units)")  # fmt: skip
    args.sigma = check_parameters(parse_eps(args.sigma), args.n0, args.n, args.alpha,
                                  skip=args.skip, n_examples=args.n_examples)  # fmt: skip
    folder = _folder(args)
    with hold_outputs(folder, _stem(args, None), "advkit certify"):
        return _certify(args, folder)


def _folder(args: argparse.Namespace) -> Path:
    try:
        external = eval_external.is_external(_with_eps(args))
    except eval_external.ExternalArgsError as error:  # its words are advkit eval's
        raise CertifyArgumentError(str(error).replace("advkit eval", "advkit certify")) from None
    if external:
        return eval_external.output_folder(args)
    runs.load_metadata(args.run)  # its errors before anything is written
    return Path(args.out) if args.out else outputs_folder(args.run)


def _with_eps(args: argparse.Namespace) -> argparse.Namespace:
    """is_external asks for --eps, which smoothing does not take: give it one."""
    copy = argparse.Namespace(**vars(args))
    copy.eps = copy.eps or "0"
    return copy


def _stem(args: argparse.Namespace, count: int | None) -> str:
    return stem(args.sigma, n0=args.n0, n=args.n, alpha=args.alpha,
                n_examples=count if count is not None else args.n_examples, skip=args.skip,
                seed=args.seed)  # fmt: skip


def _certify(args: argparse.Namespace, folder: Path) -> int:
    world = init_world(resolve_device(args.device), args.dist_backend)
    try:
        return _certify_in(args, folder, world)
    finally:
        close_world(world)


def _certify_in(args: argparse.Namespace, folder: Path, world: World) -> int:
    started = time.perf_counter()
    device = worker_device(resolve_device(args.device), world)
    if args.run is None:
        model, splits, meta, origin = eval_external.load(args, device)
        weights, title, model_id = args.weights, Path(args.weights).name, None
        extra: dict[str, Any] = {"model_origin": origin}
        warnings: list[str] = []
        architecture = args.model
    else:
        meta = runs.load_metadata(args.run)
        model = runs.load_model(args.run, device)
        splits = runs.load_test_data(meta, dataset=args.dataset, data_dir=args.data_dir)
        weights, title, origin = runs.model_paths(args.run)[0], title_of(args.run), None
        extra = {"checkpoint": meta["checkpoint"]} if "checkpoint" in meta else {}
        warning = noise_warning(meta.get("method"), args.sigma)
        warnings = [warning] if warning else []
        architecture = meta.get("architecture")
    test = splits.test
    count = len(range(0, len(test), args.skip)[: args.n_examples])
    indices = range(0, len(test), args.skip)[: args.n_examples]
    measured = provenance(architecture=architecture, indices=indices, weights_path=weights)
    model_id = origin_fingerprint(origin) if origin else measured["weights_sha256"][:16]
    base = _stem(args, count)
    state = state_path(folder, base, world.rank, world.size)
    if args.no_resume:
        state.unlink(missing_ok=True)
    radii = _radii(args.radii) if args.radii else None
    cert = run_certification(
        model, test, sigma=args.sigma, n0=args.n0, n=args.n, alpha=args.alpha,
        n_examples=args.n_examples, skip=args.skip, batch_size=args.batch_size, seed=args.seed,
        radii=radii, confidence=args.confidence, empirical_examples=args.empirical_examples,
        empirical_n=args.empirical_n, device=device, state_path=state, world=world,
        quiet=args.quiet, model_id=model_id, title=title, warnings=warnings,
        state_paths=[state_path(folder, base, rank, world.size) for rank in range(world.size)],
        extra={**measured, **extra, "dataset": meta.get("dataset")},
    )  # fmt: skip
    if cert is None:
        return 0
    cert.timing["total"] = time.perf_counter() - started
    print(format_table(cert), flush=True)
    written = cert.write(folder)
    for note in written.notes:
        print(f"note: {note}")
    for path in written.paths:
        print(f"wrote {path}")
    return 0


def _radii(text: str) -> list[float]:
    try:
        values = [parse_eps(part) for part in text.split(",") if part.strip()]
    except (ValueError, UserError):
        values = []
    if not values or any(value < 0 for value in values):
        raise CertifyArgumentError(
            f"--radii needs comma-separated L2 radii >= 0 such as 0,0.25,0.5, got {text!r}"
        )
    return values


def _interval_bounds(args: argparse.Namespace) -> int:
    """``--bounds ibp --eps E``: interval bound propagation (``advkit.bounds``), same outputs
    folder; the whole route lives here."""
    try:
        from advkit.bounds import certify_intervals
    except ImportError:
        raise CertifyArgumentError(
            "--bounds ibp needs advkit.bounds (interval bound propagation), which this advkit "
            "lacks; use --bounds smoothing --sigma S"
        ) from None
    if args.eps is None:
        raise CertifyArgumentError("--bounds ibp needs --eps, the L-inf radius, e.g. --eps 0.1")
    eps = parse_eps(args.eps)
    device = resolve_device(args.device)
    if args.run is None:
        model, splits, meta, _ = eval_external.load(args, device)
        folder = eval_external.output_folder(args)
        weights, architecture = args.weights, args.model
    else:
        meta = runs.load_metadata(args.run)
        model = runs.load_model(args.run, device)
        splits = runs.load_test_data(meta, dataset=args.dataset, data_dir=args.data_dir)
        folder = Path(args.out) if args.out else outputs_folder(args.run)
        weights, architecture = runs.model_paths(args.run)[0], meta.get("architecture")
    indices = torch.arange(0, len(splits.test), args.skip)[: args.n_examples]
    test = splits.test.take(indices)
    measured = provenance(architecture=architecture, indices=indices.tolist(), weights_path=weights)
    base = f"bounds-ibp-eps{eps:.4g}-ex{len(test)}"
    with hold_outputs(folder, base, "advkit certify --bounds ibp"):
        result = certify_intervals(
            model,
            test.inputs(slice(0, len(test))).to(device),
            test.labels.to(device),
            eps,
            batch_size=args.batch_size,
        )
        from advkit.evaluation.report import write_json, write_markdown

        print(result.markdown(), flush=True)
        record = {**result.to_dict(), **measured, "dataset": meta.get("dataset")}
        for path in (write_json(folder / f"{base}.json", record),
                     write_markdown(folder / f"{base}.md", result.markdown())):  # fmt: skip
            print(f"wrote {path}")
    return 0
