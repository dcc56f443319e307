from __future__ import annotations

import os
import pickle

import pytest
import torch

from advkit.training.checkpoint import (
    atomic_write,
    load_state,
    load_weights,
    save_state,
    save_weights,
)


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "state.pt"
    save_state({"a": torch.ones(2)}, path)

    def broken(tmp):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, broken)
    assert torch.equal(load_state(path)["a"], torch.ones(2))
    assert os.listdir(tmp_path) == ["state.pt"]


# The round trips below compare exactly: saving and loading copy bytes, with no arithmetic.


def test_state_round_trip(tmp_path):
    state = {"w": torch.randn(3), "epoch": 2, "history": "[]", "rng": torch.get_rng_state()}
    save_state(state, tmp_path / "s.pt")
    loaded = load_state(tmp_path / "s.pt")
    assert torch.equal(loaded["w"], state["w"]) and loaded["epoch"] == 2


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_loading_refuses_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"payload": _Exploit()}, path, pickle_module=pickle)
    with pytest.raises(pickle.UnpicklingError):
        load_state(path)


def test_weights_round_trip(tmp_path):
    tensors = {"a.weight": torch.randn(4, 3).t(), "b": torch.arange(3)}
    save_weights(tensors, tmp_path / "w.safetensors")
    loaded = load_weights(tmp_path / "w.safetensors")
    assert torch.equal(loaded["a.weight"], tensors["a.weight"])
