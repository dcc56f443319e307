#!/usr/bin/env bash
# IBP's numbers (issue 20): cnn-small (close to Gowal et al.'s "small" model: conv16-conv32-FC100)
# trained with --method ibp on the CPU, then verified accuracy on the test set by interval bounds
# with elided margins (benchmarks/certify_ibp.py) and PGD-20 beside it. As Gowal et al., each run
# trains at a larger eps than it is tested at (0.2 for 0.1, 0.4 for 0.3), holds eps at 0 for a
# while, then ramps eps up and kappa down (1 -> 0.5) together; Adam at 1e-3, no weight decay.
# Paper (large model, 100 epochs): MNIST 97.8% verified at 0.1, 92-93% at 0.3.
# Usage: benchmarks/ibp_table.sh OUT_DIR [name ...]; DATA=../shared/data, EPOCHS=20, N=10000 test
# images certified (PGD-20 on the first 1000).
set -euo pipefail
out=${1:?usage: ibp_table.sh OUT_DIR [name ...]}
shift || true
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
advkit=${ADVKIT:-.venv/bin/advkit}
python=${PYTHON:-.venv/bin/python}
data=${DATA:-../shared/data}
epochs=${EPOCHS:-20}
# Hold 5% of the passes at eps 0, ramp over the next 40% (the lr's first drop, piecewise, is at
# 50%): Gowal et al.'s MNIST schedule held 3% and ramped over 17%, over 100 epochs.
hold=$(python3 -c "print(round($epochs * 0.05, 2))")
ramp=$(python3 -c "print(round($epochs * 0.4, 2))")
common=(--model cnn-small --method ibp --kappa 0.5 --epochs "$epochs" --eps-hold-epochs "$hold"
        --eps-warmup-epochs "$ramp" --optimizer adam --lr 1e-3 --schedule piecewise
        --weight-decay 0 --batch-size 100 --val-examples 500 --quiet)

declare -A runs=(
  [mnist-0.1]="--dataset mnist --data-dir $data --eps 0.2"
  [mnist-0.3]="--dataset mnist --data-dir $data --eps 0.4"
  [fmnist-0.1]="--dataset fashion-mnist --eps 0.2"
)
declare -A tests=([mnist-0.1]="--dataset mnist --data-dir $data --eps 0.1"
                  [mnist-0.3]="--dataset mnist --data-dir $data --eps 0.3"
                  [fmnist-0.1]="--dataset fashion-mnist --eps 0.1")
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(mnist-0.1 mnist-0.3 fmnist-0.1)
for name in "${names[@]}"; do
  run="$out/$name"
  if [ ! -f "$run/model.safetensors" ]; then
    # shellcheck disable=SC2086
    /usr/bin/time -f "$name: trained in %e s" $advkit train "${common[@]}" ${runs[$name]} ${EXTRA:-} --out "$run"
  fi
  # shellcheck disable=SC2086
  $python benchmarks/certify_ibp.py "$run" ${tests[$name]} --n "${N:-10000}" | tee "$run/ibp-certify.txt"
done
