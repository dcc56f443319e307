"""Device names from the command line or a config, checked against this machine, and the
backend settings a run on a device records."""

from __future__ import annotations

from typing import Any

import torch

from advkit.errors import DeviceError

_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU if there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``, or
    another torch device type this machine has; DeviceError saying what exists otherwise."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"unknown device {name!r}; use {_CHOICES}") from None
    if device.type == "cpu":
        return device
    backend = getattr(torch, device.type, None)
    if backend is None or not hasattr(backend, "is_available") or not backend.is_available():
        what = "no CUDA GPU is available" if device.type == "cuda" else "it is not available here"
        raise DeviceError(f"device {name!r} asked for, but {what}; use --device cpu")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if device.index is not None and device.index >= count:
        raise DeviceError(
            f"device {name!r} does not exist: this machine has {count} {device.type} device"
            f"{'s' if count != 1 else ''} ({device.type}:0 to {device.type}:{count - 1}); "
            f"use one of them or {_CHOICES}"
        )
    return device


def backend_flags(device: torch.device) -> dict[str, Any]:
    """The settings that change a device's numbers or speed, for the run metadata: cuDNN's
    ``benchmark`` (autotuned, possibly nondeterministic algorithms), ``deterministic`` and
    ``allow_tf32`` (TF32 convolutions), TF32 matrix products, deterministic algorithms; on CUDA
    also the GPU's name and the CUDA and cuDNN versions. Read, never changed."""
    cudnn = torch.backends.cudnn
    flags: dict[str, Any] = {
        "cudnn_benchmark": bool(cudnn.benchmark),
        "cudnn_deterministic": bool(cudnn.deterministic),
        "cudnn_allow_tf32": bool(cudnn.allow_tf32),
        "cuda_matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }
    if device.type == "cuda":
        flags |= {
            "device_name": torch.cuda.get_device_name(device),
            "cuda_version": torch.version.cuda,
            "cudnn_version": cudnn.version() if cudnn.is_available() else None,
        }
    return flags
