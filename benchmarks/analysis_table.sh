#!/usr/bin/env bash
# The "What training did to the model" figures of BENCHMARKS.md: train natural, PGD-7, Free-4 and
# fast FGSM on Fashion-MNIST (the recipes of fmnist_table.sh, training only), run `advkit analyze`
# on each and on all four side by side, then print the table of their numbers.
# Usage: benchmarks/analysis_table.sh OUT_DIR
set -euo pipefail
out=${1:?usage: analysis_table.sh OUT_DIR}
advkit=${ADVKIT:-.venv/bin/advkit}
python=${PYTHON:-.venv/bin/python}
names=(natural pgd7 free4 fast)
SKIP_EVAL=1 "$(dirname "$0")/fmnist_table.sh" "$out" "${names[@]}"
for name in "${names[@]}"; do
  TIMEFORMAT="analyze $name: %R s wall, %U s user CPU"
  time $advkit analyze "$out/$name"
done
$advkit analyze "${names[@]/#/$out/}" --out "$out/compare"
$python "$(dirname "$0")/summarize_analysis.py" "${names[@]/#/$out/}"
