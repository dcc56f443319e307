#!/usr/bin/env bash
# The DAT tables of BENCHMARKS.md on Fashion-MNIST (eps 0.1, cnn-small, equal epochs): baselines
# at batch 128 on one process, DAT at a 16x global batch (2048) on 2 workers with and without
# LALR, and DAT with each gradient compression. Each run is trained (unless it exists), then
# evaluated with the paper and autoattack suites on the first N_EVAL test images.
# Usage: benchmarks/dat_table.sh OUT_DIR [name ...]   (names: the keys of `runs` below)
# Learning rates were chosen by validation accuracy (val_pgd in model.json), never the test set:
# the lr-* runs are that sweep (evaluate nothing: SWEEP=1 skips the evaluation). SUITES picks
# the evaluation suites (default "paper autoattack").
set -euo pipefail
out=${1:?usage: dat_table.sh OUT_DIR [name ...]}
shift || true
n_eval=${N_EVAL:-1000}
epochs=${EPOCHS:-10}
advkit=${ADVKIT:-.venv/bin/advkit}
common=(--dataset fashion-mnist --model cnn-small --eps 0.1 --epochs "$epochs" --quiet)
dat=(--batch-size 2048 --clean-weight 1 --nproc 2)
lalr=(--optimizer lalr --lalr-base adam --schedule cyclic)
nolalr=(--optimizer sgd --schedule cyclic)  # lr: the sweep below picks 0.1 unscaled
scaled=(--optimizer sgd --lr-scaling linear --schedule cyclic)  # lr * 2048 / 128

declare -A runs=(
  [at]="--method pgd --steps 7 --batch-size 128"
  [fast]="--method fast --batch-size 128"
  [dat-pgd]="--config dat-pgd --nproc 2"
  [dat-pgd-nolalr]="--method pgd --steps 7 ${dat[*]} ${nolalr[*]}"
  [dat-fgsm]="--config dat-fgsm --nproc 2"
  [dat-fgsm-nolalr]="--method fast ${dat[*]} ${nolalr[*]}"
  [dat-pgd-cw0]="--config dat-pgd --nproc 2 --clean-weight 0"  # LALR alone: Madry's loss
  [dat-fgsm-cw0]="--config dat-fgsm --nproc 2 --clean-weight 0"
)
for lr in 0.005 0.01 0.02 0.04 0.08 0.16; do
  runs[lr-fgsm-lalr-$lr]="--method fast ${dat[*]} ${lalr[*]} --lr $lr"
done
for lr in 0.003125 0.00625 0.0125 0.025 0.05 0.1; do
  runs[lr-fgsm-sgd-$lr]="--method fast ${dat[*]} ${scaled[*]} --lr $lr"
done
for compression in fp16 bf16 int8 int8-2sided powersgd; do
  runs[dat-fgsm-$compression]="--config dat-fgsm --nproc 2 --grad-compression $compression"
done
# LALR's other settings, on validation (SWEEP=1)
runs[lalr-fgsm-exclude-1d]="--config dat-fgsm --nproc 2 --lalr-exclude-1d"
runs[lalr-fgsm-sgd-base]="--config dat-fgsm --nproc 2 --lalr-base sgd"
runs[lalr-fgsm-clip-20]="--config dat-fgsm --nproc 2 --lalr-clip 0 20"
runs[lalr-fgsm-cosine-warmup]="--config dat-fgsm --nproc 2 --schedule cosine --warmup-epochs 2"
runs[dat-fgsm-int8-ef]="--config dat-fgsm --nproc 2 --grad-compression int8 --error-feedback"

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(at fast dat-pgd dat-pgd-nolalr dat-fgsm dat-fgsm-nolalr)
for name in "${names[@]}"; do
  run="$out/$name"
  if [ ! -f "$run/model.safetensors" ]; then
    # shellcheck disable=SC2086
    $advkit train "${common[@]}" ${runs[$name]} ${EXTRA:-} --out "$run"
  fi
  if [ -z "${SWEEP:-}" ]; then
    for suite in ${SUITES:-paper autoattack}; do
      $advkit eval "$run" --suite "$suite" --n-examples "$n_eval" --quiet --eps 0.1
    done
  fi
done
