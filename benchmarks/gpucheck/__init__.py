"""advkit on a CUDA machine, checked through its CLI in seconds per check, then benchmarked.

    python benchmarks/gpu_check.py                  # on a GPU machine (make gpu-check)
    python benchmarks/gpu_check.py --cpu-smoke      # the same checks, tiny shapes, on a CPU (CI)
    python benchmarks/gpu_check.py --only 'amp-*' --no-bench

Modules: features (what this advkit offers, from its parser and registries), profile (sizes and
devices), plan (the checks), bench (Wong et al.'s fast-AT CIFAR-10 benchmark), runner (one check
as a subprocess or in this process), report (table and report.json), cli.
"""
