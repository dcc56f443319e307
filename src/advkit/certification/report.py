"""A certification's results: the radii table with exact intervals, the average certified
radius, the largest radius these n and alpha can certify, the empirical column beside it, and
the JSON, Markdown and figure written where no other certification is replaced.

Certified accuracy at radius r is the fraction of the certified samples that CERTIFY classifies
right with a radius of at least r (Cohen et al.); its interval is the exact (Clopper-Pearson)
interval over the test samples. The average certified radius (Zhai et al., MACER, ICLR 2020) is
the mean radius, counted 0 where the prediction is wrong or abstains. Above the radius cap
sigma * Phi^-1(alpha^(1/n)) every certified accuracy is 0 by construction.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from advkit.certification.empirical import EmpiricalPoint
from advkit.certification.outputs import CertIdentity, CertOutputs, place, stem
from advkit.certification.plots import Curve, certified_png
from advkit.certification.runner import SampleResults
from advkit.certification.statistics import clopper_pearson_interval, radius_cap
from advkit.evaluation.provenance import PROVENANCE_KEYS
from advkit.evaluation.report import write_json, write_markdown
from advkit.files import write_bytes

log = logging.getLogger("advkit.certification")

RADIUS_STEP = 0.25


def default_radii(cap: float) -> list[float]:
    """0, 0.25, 0.5, ... up to the first multiple of 0.25 above the cap."""
    top = math.floor(cap / RADIUS_STEP) + 1
    return [RADIUS_STEP * i for i in range(top + 1)]


@dataclass
class Certification:
    """One certification (``advkit certify``, ``advkit.certify``): per-sample results and what
    was certified with which parameters."""

    results: SampleResults
    sigma: float
    n0: int
    n: int
    alpha: float
    seed: int
    batch_size: int
    skip: int
    radii: list[float]
    confidence: float = 0.95
    empirical: list[EmpiricalPoint] | None = None
    empirical_settings: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    title: str = "model"
    warnings: list[str] = field(default_factory=list)
    #: the per-sample states (every worker's), removed once the JSON is written
    state_paths: list[Path] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ numbers
    @property
    def cap(self) -> float:
        """The largest radius these n and alpha can certify (all n draws agreeing)."""
        return radius_cap(self.sigma, self.n, self.alpha)

    def certified_count(self, at: float) -> int:
        return int((self.results.correct & (self.results.radii >= at)).sum())

    def certified_accuracy(self, at: float) -> float:
        """The fraction right and certified at L2 radius ``at`` (pixel units)."""
        return self.certified_count(at) / max(len(self.results), 1)

    def average_certified_radius(self) -> float:
        return float(np.where(self.results.correct, self.results.radii, 0.0).mean())

    def table(self) -> list[dict[str, Any]]:
        """One row per radius: accuracy, its interval, and whether it is above the cap."""
        count = len(self.results)
        rows = []
        for at in self.radii:
            certified = self.certified_count(at)
            low, high = clopper_pearson_interval(certified, count, self.confidence)
            rows.append({"radius": at, "certified": certified, "accuracy": certified / count,
                         "interval": [low, high], "above_cap": at > self.cap})  # fmt: skip
        return rows

    def flags(self) -> list[str]:
        """Certified above empirical beyond sampling error: each is a bug, said as such."""
        return [
            f"BUG: certified accuracy {p.certified / p.n:.1%} at radius {p.radius:g} is above the "
            f"fraction {(p.robust + p.abstained) / p.n:.1%} of the same {p.n} samples that the "
            "attack did not break (right or abstaining) beyond sampling error (their intervals "
            "do not overlap): a certificate cannot be beaten"
            for p in self.empirical or () if p.suspicious
        ]  # fmt: skip

    def identity(self) -> CertIdentity:
        return CertIdentity(self.sigma, self.n0, self.n, self.alpha, len(self.results),
                            self.skip, self.seed, self.extra.get("model"))  # fmt: skip

    # ------------------------------------------------------------------ outputs
    def to_dict(self) -> dict[str, Any]:
        r = self.results
        return {
            "kind": "certification", "method": "randomized smoothing (Cohen et al. 2019)",
            "title": self.title, "sigma": self.sigma, "n0": self.n0, "n": self.n,
            "alpha": self.alpha, "seed": self.seed, "batch_size": self.batch_size,
            "skip": self.skip, "n_examples": len(r), "confidence": self.confidence,
            "interval_method": "clopper-pearson", "norm": "l2",
            "radius_cap": self.cap,
            "accuracy_smoothed": float(r.correct.mean()) if len(r) else 0.0,
            "abstained": float(r.abstained.mean()) if len(r) else 0.0,
            "average_certified_radius": self.average_certified_radius(),
            "certified_accuracy": self.table(),
            "empirical": None if self.empirical is None else {
                **self.empirical_settings, "points": [p.to_dict() for p in self.empirical]},
            "flags": self.flags(), "warnings": list(self.warnings),
            **self.extra,
            "timing": {key: round(value, 3) for key, value in self.timing.items()},
            "per_sample": {
                "index": r.indices.tolist(), "label": r.labels.tolist(),
                "prediction": r.predictions.tolist(),
                "radius": [round(float(v), 6) for v in r.radii],
                "correct": r.correct.tolist(), "abstained": r.abstained.tolist(),
                "seconds": [round(float(v), 4) for v in r.seconds],
            },
        }  # fmt: skip

    def markdown(self, figure: str | None = None) -> str:
        """The report: parameters, the table beside the cap, the empirical column, provenance."""
        r = self.results
        lines = [f"# Certification of {self.title}", ""]
        every = f" (every {self.skip}-th)" if self.skip > 1 else ""
        lines.append(
            f"Randomized smoothing (Cohen et al., ICML 2019), sigma = {self.sigma:g} (pixel "
            f"units), n0 = {self.n0}, n = {self.n}, alpha = {self.alpha:g}, {len(r)} test "
            f"images{every}, seed {self.seed}. L2 radii in [0,1] pixel units."
        )
        lines += ["", f"**Largest radius these n and alpha can certify: {self.cap:.4f}** "
                  "(sigma * Phi^-1(alpha^(1/n)), all n draws agreeing): above it every certified "
                  "accuracy is 0 by construction, not because of the model.", ""]  # fmt: skip
        lines.append(
            f"Accuracy of the smoothed classifier {r.correct.mean():.1%}, abstained "
            f"{r.abstained.mean():.1%}, average certified radius "
            f"{self.average_certified_radius():.4f}."
        )
        empirical = {p.radius: p for p in self.empirical or ()}
        level = f"{self.confidence:.0%}"
        header = f"| radius | certified accuracy | {level} interval |"
        rule = "|---|---|---|"
        if empirical:
            header += f" certified (same {next(iter(empirical.values())).n}) | empirical | |"
            rule += "---|---|---|"
        lines += ["", header, rule]
        for row in self.table():
            note = " (above the cap)" if row["above_cap"] else ""
            line = (f"| {row['radius']:g}{note} | {row['accuracy']:.1%} | "
                    f"{row['interval'][0]:.1%} - {row['interval'][1]:.1%} |")  # fmt: skip
            if empirical:
                point = empirical.get(row["radius"])
                if point is None:
                    line += " | | |"
                else:
                    flag = "**BUG: certified > empirical**" if point.suspicious else ""
                    line += (
                        f" {point.certified / point.n:.1%} | {point.robust / point.n:.1%} "
                        f"({point.interval[0]:.1%} - {point.interval[1]:.1%}) | {flag} |"
                    )
            lines.append(line)
        if self.empirical is not None:
            s = self.empirical_settings
            lines += ["", f"Empirical: SmoothAdv's L2 attack on the soft smoothed classifier "
                      f"(m = {s.get('m')} noise draws, {s.get('steps')} steps) at each radius, "
                      f"then PREDICT with n = {s.get('n')} draws, on the first "
                      f"{s.get('examples')} certified images; the certified column beside it "
                      "counts the same images."]  # fmt: skip
        for text in self.flags() + self.warnings:
            lines += ["", f"- {text}"]
        if figure:
            lines += ["", f"![Certified accuracy against radius]({figure})"]
        lines += ["", "## Provenance", ""]
        for key in ("model_origin", "dataset", *PROVENANCE_KEYS, "workers"):
            if key in self.extra:
                lines.append(f"- {key}: {self.extra[key]}")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: str | Path) -> WrittenCertification:
        """JSON, then Markdown, then the figure (with the folder's other certifications of the
        same model as further curves), each atomically, named so that no other certification
        is replaced."""
        folder = Path(out_dir)
        base = stem(self.sigma, n0=self.n0, n=self.n, alpha=self.alpha,
                    n_examples=len(self.results), skip=self.skip, seed=self.seed)  # fmt: skip
        outputs, notes = place(folder, base, self.identity())
        clock = time.perf_counter()
        figure = certified_png(self._curves(folder, outputs), title=self.title)
        self.timing["figure"] = time.perf_counter() - clock
        data = self.to_dict()
        written = [write_json(outputs.json, data)]
        for path in self.state_paths:
            path.unlink(missing_ok=True)
        written.append(write_markdown(outputs.markdown, self.markdown(outputs.figure.name)))
        written.append(write_bytes(outputs.figure, figure))
        return WrittenCertification(outputs, notes, written, data)

    def curve(self) -> Curve:
        label = f"sigma {self.sigma:g}, n {self.n}"
        return Curve.of(label, self.results.radii, self.results.correct, self.cap)

    def _curves(self, folder: Path, outputs: CertOutputs) -> list[Curve]:
        curves = [self.curve()]
        for path in sorted(folder.glob("cert-*.json")):
            if path == outputs.json:
                continue
            try:
                other = json.loads(path.read_text())
                if other.get("model") != self.extra.get("model") or "per_sample" not in other:
                    continue
                samples = other["per_sample"]
                curves.append(Curve.of(
                    f"sigma {other['sigma']:g}, n {other['n']} ({path.stem})",
                    np.asarray(samples["radius"], dtype=float),
                    np.asarray(samples["correct"], dtype=bool), float(other["radius_cap"]),
                ))  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return curves


@dataclass(frozen=True)
class WrittenCertification:
    outputs: CertOutputs
    notes: list[str]
    paths: list[Path]
    data: dict[str, Any]


def format_table(cert: Certification) -> str:
    """The terminal's summary: the radii table, the cap beside it, ACR, flags."""
    r = cert.results
    lines = [f"certified (sigma {cert.sigma:g}, n {cert.n}, alpha {cert.alpha:g}, {len(r)} "
             f"images): accuracy {r.correct.mean():.1%}, abstained {r.abstained.mean():.1%}, "
             f"average certified radius {cert.average_certified_radius():.3f}",
             f"largest certifiable radius with these n and alpha: {cert.cap:.3f} (above it 0% "
             "by construction)"]  # fmt: skip
    empirical = {p.radius: p for p in cert.empirical or ()}
    for row in cert.table():
        text = (f"  radius {row['radius']:<5g} certified {row['accuracy']:6.1%} "
                f"[{row['interval'][0]:.1%}, {row['interval'][1]:.1%}]")  # fmt: skip
        if row["above_cap"]:
            text += "  (above the cap)"
        point = empirical.get(row["radius"])
        if point is not None:
            text += (f"  | same {point.n}: certified {point.certified / point.n:.1%}, empirical "
                     f"{point.robust / point.n:.1%}")  # fmt: skip
            if point.suspicious:
                text += "  BUG"
        lines.append(text)
    return "\n".join(lines + cert.flags())
