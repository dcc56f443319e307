"""A write the system refuses is a one-line WriteError naming the file, and loses nothing."""

from __future__ import annotations

import errno
import os

import pytest
import torch

from advkit.errors import UserError, WriteError
from advkit.files import atomic_write, write_error, write_text
from advkit.training.checkpoint import load_state, load_weights, save_state, save_weights
from advkit.training.plots import plot_curves
from tests.disk_faults import file_size_limit, refuse_writes

BIG = {"w": torch.zeros(64_000)}  # 256 kB of tensor: past the limit below


def test_torch_and_safetensors_refused_by_the_kernel_raise_write_errors(tmp_path):
    """torch.save and safetensors hide the OS error behind their own (RuntimeError "unexpected
    pos", SafetensorError) when they write by path; advkit's writes keep it."""
    state, weights = tmp_path / "last.pt", tmp_path / "best.safetensors"
    save_state({"w": torch.ones(3)}, state)
    save_weights({"w": torch.ones(3)}, weights)
    with file_size_limit(64 * 1024):
        with pytest.raises(WriteError, match=f"cannot write {state}: File too large"):
            save_state(BIG, state)
        with pytest.raises(WriteError, match=f"cannot write {weights}"):
            save_weights(BIG, weights)
    assert torch.equal(load_state(state)["w"], torch.ones(3))
    assert torch.equal(load_weights(weights)["w"], torch.ones(3))
    assert sorted(os.listdir(tmp_path)) == ["best.safetensors", "last.pt"]


def test_a_full_disk_names_the_file_the_free_space_and_the_need(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_state({"w": torch.ones(3)}, path)
    refuse_writes(monkeypatch, lambda name: name == "last.pt", room=1000)
    with pytest.raises(WriteError) as caught:
        save_state(BIG, path)
    message = str(caught.value)
    assert message.startswith(f"cannot write {path}: no space is left on its file system (")
    assert "free there, about 257 kB needed): free some space or write elsewhere" in message
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError | UserError)
    assert torch.equal(load_state(path)["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["last.pt"]


@pytest.mark.parametrize(
    ("code", "says"),
    [
        (errno.EROFS, "its file system is read-only: choose a folder on a writable file system"),
        (errno.EACCES, "permission denied: choose a folder you can write to"),
        (errno.EPERM, "permission denied"),
        (errno.EDQUOT, "the disk quota is exceeded"),
    ],
)
def test_each_refusal_says_what_to_do(tmp_path, monkeypatch, code, says):
    path = tmp_path / "curves.png"
    refuse_writes(monkeypatch, lambda name: name == "curves.png", code)
    with pytest.raises(WriteError, match=f"cannot write {path}: {says}"):
        plot_curves([{"epoch": 1, "train_loss": 1.0, "val_clean": 0.5}], path)
    assert os.listdir(tmp_path) == []


def test_a_library_failure_on_a_full_file_system_is_a_write_error(tmp_path, monkeypatch):
    """A writer that hides the OS error (a RuntimeError) while the disk has no room left."""
    import advkit.files

    monkeypatch.setattr(advkit.files, "free_bytes", lambda path: 0)

    def torch_like(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    with pytest.raises(WriteError, match="no space is left on its file system"):
        atomic_write(tmp_path / "x.pt", torch_like)
    assert os.listdir(tmp_path) == []


def test_a_library_failure_with_room_left_stays_a_bug(tmp_path):
    def broken(tmp):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        atomic_write(tmp_path / "x.pt", broken)


def test_then_adds_the_next_step_and_keeps_the_errno(tmp_path):
    error = write_error(tmp_path / "a", OSError(errno.ENOSPC, "No space left on device"), 10)
    later = error.then("resume")
    assert str(later).endswith("; then resume") and later.errno == errno.ENOSPC
    assert isinstance(later, OSError) and later.path == tmp_path / "a"
    assert write_text(tmp_path / "b.txt", "é").read_text(encoding="utf-8") == "é"
