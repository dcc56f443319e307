"""Certified robustness by randomized smoothing (Cohen et al., ICML 2019, arXiv:1902.02918).

statistics (Clopper-Pearson, radius, the radius cap, PREDICT's test), smoothing (the smoothed
classifier: ``predict``, ``certify``), runner (CERTIFY over a test set: resumable, sharded),
empirical (an attack on the soft smoothed classifier, the column beside the certificate),
report (the radii table, ACR, cap, flags; JSON and Markdown), outputs (names that never
replace another certification), plots, session (one certification; ``advkit.certify``).
"""

from __future__ import annotations

from advkit.certification.report import Certification
from advkit.certification.session import certify, run_certification
from advkit.certification.smoothing import ABSTAIN, Certificate, Smooth, smooth

__all__ = ["ABSTAIN", "Certificate", "Certification", "Smooth", "certify", "run_certification",
           "smooth"]  # fmt: skip
