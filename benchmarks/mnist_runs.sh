#!/usr/bin/env bash
# MNIST at eps = 0.3 (BENCHMARKS.md): fast FGSM AT and PGD-40 AT on the small strided CNN, with the
# shipped recipes (src/advkit/recipes/mnist-*.yaml), each evaluated with PGD-50 and 10 restarts
# (Wong et al.'s MNIST evaluation) on N_EVAL test images and the autoattack suite on 1000.
# Usage: benchmarks/mnist_runs.sh OUT_DIR [DATA_DIR] [RUN ...]
#   RUN: fast, pgd40, or fast-s<N> / pgd40-s<N> for another seed (default: fast pgd40)
set -euo pipefail
out=${1:?usage: mnist_runs.sh OUT_DIR [DATA_DIR] [RUN ...]}
data=${2:-../shared/data}
n_eval=${N_EVAL:-10000}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
advkit=${ADVKIT:-.venv/bin/advkit}

names=("${@:3}")
[ ${#names[@]} -gt 0 ] || names=(fast pgd40)
for name in "${names[@]}"; do
  recipe=mnist-${name%-s*}
  seed=0
  [[ $name == *-s* ]] && seed=${name##*-s}
  run="$out/$name"
  if [ ! -f "$run/model.safetensors" ]; then
    $advkit train --config "$recipe" --seed "$seed" --data-dir "$data" --quiet --out "$run"
  fi
  $advkit eval "$run" --suite restarts --n-examples "$n_eval" --quiet --data-dir "$data"
  $advkit eval "$run" --suite autoattack --n-examples 1000 --quiet --data-dir "$data"
done
