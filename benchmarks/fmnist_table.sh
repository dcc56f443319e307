#!/usr/bin/env bash
# The Fashion-MNIST (eps = 0.1) results table of BENCHMARKS.md: train each method on the same
# model and data, then evaluate each run with the paper and autoattack suites on the first
# N_EVAL test images (SKIP_EVAL=1: train only). Usage: benchmarks/fmnist_table.sh OUT_DIR [method ...]
# Runs on one thread (OMP_NUM_THREADS=1) so that timings are stable on a shared 2-core machine.
set -euo pipefail
out=${1:?usage: fmnist_table.sh OUT_DIR [name ...]}
shift || true
n_eval=${N_EVAL:-1000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
advkit=${ADVKIT:-.venv/bin/advkit}
common=(--dataset fashion-mnist --model "${MODEL:-cnn-small}" --eps 0.1 --quiet)

declare -A recipes=(
  [natural]="--method natural --epochs 10"
  [pgd7]="--method pgd --steps 7 --epochs 8"
  [free2]="--method free --replays 2 --epochs 24 --paper-epochs"
  [free4]="--method free --replays 4 --epochs 24 --paper-epochs"
  [free8]="--method free --replays 8 --epochs 24 --paper-epochs"
  [free4-long]="--method free --replays 4 --epochs 48 --paper-epochs"
  [fast]="--method fast --epochs 15"
  [gradalign]="--method gradalign --epochs 10"
  [trades]="--method trades --steps 5 --epochs 8"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(natural pgd7 free2 free4 free8 fast gradalign trades)
for name in "${names[@]}"; do
  run="$out/$name"
  if [ ! -f "$run/model.safetensors" ]; then
    # shellcheck disable=SC2086
    $advkit train "${common[@]}" ${recipes[$name]} ${EXTRA:-} --out "$run"
  fi
  [ -z "${SKIP_EVAL:-}" ] || continue
  $advkit eval "$run" --suite paper --n-examples "$n_eval" --quiet --eps 0.1
  $advkit eval "$run" --suite autoattack --n-examples "$n_eval" --quiet --eps 0.1
done
