#!/usr/bin/env bash
# MNIST at eps = 0.3 (BENCHMARKS.md): fast FGSM AT and PGD-40 AT on the small strided CNN, each
# evaluated with PGD-50 and 10 restarts (Wong et al.'s MNIST evaluation) and the autoattack suite.
# Usage: benchmarks/mnist_runs.sh OUT_DIR [DATA_DIR]   (DATA_DIR holds mnist.npz or the idx files)
set -euo pipefail
out=${1:?usage: mnist_runs.sh OUT_DIR [DATA_DIR]}
data=${2:-../shared/data}
n_eval=${N_EVAL:-1000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
advkit=${ADVKIT:-.venv/bin/advkit}
common=(--dataset mnist --data-dir "$data" --model cnn-small --eps 0.3 --quiet)

declare -A recipes=(
  [fast]="--method fast --epochs 10 --lr 0.1"
  [pgd40]="--method pgd --steps 40 --step-size 0.01 --epochs ${PGD_EPOCHS:-3} --lr 0.05 --eps-warmup-epochs 1"
)
names=("${@:3}")
[ ${#names[@]} -gt 0 ] || names=(fast pgd40)
for name in "${names[@]}"; do
  run="$out/$name"
  if [ ! -f "$run/model.safetensors" ]; then
    # shellcheck disable=SC2086
    $advkit train "${common[@]}" ${recipes[$name]} --out "$run"
  fi
  $advkit eval "$run" --suite restarts --n-examples "$n_eval" --quiet --data-dir "$data"
  $advkit eval "$run" --suite autoattack --n-examples "$n_eval" --quiet --data-dir "$data"
done
