#!/usr/bin/env bash
# Every method with advkit's defaults (no recipe) on every dataset advkit reads by name and that
# is on this machine, a few epochs each: does each train well above chance? (BENCHMARKS.md,
# "Training with the defaults"). Usage: benchmarks/defaults_table.sh OUT_DIR [extra train options]
# then: .venv/bin/python benchmarks/summarize_defaults.py OUT_DIR
# SUBSET (6000), EPOCHS (4), DATASETS ("fashion-mnist mnist cifar10"), METHODS (every method).
set -euo pipefail
out=${1:?usage: defaults_table.sh OUT_DIR [extra train options]}
shift || true
mkdir -p "$out"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
advkit=${ADVKIT:-.venv/bin/advkit}
data_dir=${DATA_DIR:-../shared/data}
for dataset in ${DATASETS:-fashion-mnist mnist cifar10}; do
  where=()
  [ "$dataset" = fashion-mnist ] || where=(--data-dir "$data_dir")
  for method in ${METHODS:-natural pgd free fast gradalign trades}; do
    run="$out/$dataset-$method"
    [ -f "$run/model.safetensors" ] && continue
    $advkit train --dataset "$dataset" "${where[@]}" --method "$method" \
      --subset "${SUBSET:-6000}" --val-size 500 --val-examples "${VAL_EXAMPLES:-500}" --epochs "${EPOCHS:-4}" \
      --quiet "$@" --out "$run" > "$run.log" 2>&1 || echo "$run failed (see $run.log)"
  done
done
