"""Verified accuracy of a run by interval bound propagation, beside its clean and PGD-20 accuracy
on the same test images (an attack's robust accuracy is an upper bound, the certificate a lower
one). Until ``advkit certify RUN --bounds ibp`` lands, this is the command-line way to run
``advkit.bounds.certify_intervals``.

Usage: python benchmarks/certify_ibp.py RUN --dataset mnist --data-dir ../shared/data \
           --eps 0.1 [--eps 0.3] [--n 10000]
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import advkit
from advkit.attacks import pgd
from advkit.bounds import certify_intervals
from advkit.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--data-dir")
    parser.add_argument("--eps", type=float, action="append", required=True)
    parser.add_argument("--n", type=int, default=10000, help="first N test images")
    parser.add_argument("--pgd-n", type=int, default=1000, help="PGD-20 on the first N of them")
    args = parser.parse_args()
    model = advkit.load_model(args.run)
    test = load_dataset(args.dataset, args.data_dir, for_training=False).test
    images, labels = test.images[: args.n], test.labels[: args.n]
    inputs = images.float().div(255) if images.dtype == torch.uint8 else images.float()
    for eps in args.eps:
        started = time.perf_counter()
        result = certify_intervals(model, inputs, labels, eps)
        seconds = time.perf_counter() - started
        m = min(args.pgd_n, len(inputs))
        adv = pgd(model, inputs[:m], labels[:m], eps=eps, steps=20)
        with torch.no_grad():
            robust = float((model(adv).argmax(1) == labels[:m]).float().mean())
        print(result.markdown())
        record = result.to_dict() | {"pgd20": robust, "pgd20_n": m, "certify_seconds": seconds}
        print(json.dumps(record))


if __name__ == "__main__":
    main()
