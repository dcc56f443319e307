"""The tests find the shared real data from a clone anywhere, and say where they looked."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    DEFAULT_SHARED_DATA,
    SHARED_DATA_ENV,
    shared_data_dir,
    shared_data_file,
)


def test_the_variable_points_the_tests_at_another_folder(tmp_path, monkeypatch):
    (tmp_path / "mnist.npz").write_bytes(b"")
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    assert shared_data_dir() == tmp_path
    assert shared_data_file("mnist.npz") == tmp_path / "mnist.npz"


def test_without_the_variable_the_folder_beside_the_checkout(monkeypatch):
    monkeypatch.delenv(SHARED_DATA_ENV, raising=False)
    assert shared_data_dir() == DEFAULT_SHARED_DATA
    repo = Path(__file__).resolve().parents[1]
    assert repo.parent / "shared" / "data" == DEFAULT_SHARED_DATA
    monkeypatch.setenv(SHARED_DATA_ENV, "  ")  # set but empty counts as unset
    assert shared_data_dir() == DEFAULT_SHARED_DATA


def test_a_missing_file_skips_naming_the_variable_and_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(SHARED_DATA_ENV, str(tmp_path))
    with pytest.raises(pytest.skip.Exception) as skipped:
        shared_data_file("cifar10.npz")
    message = str(skipped.value)
    assert "cifar10.npz" in message and str(tmp_path) in message
    assert f"${SHARED_DATA_ENV}" in message

    monkeypatch.delenv(SHARED_DATA_ENV)
    monkeypatch.setattr("tests.conftest.DEFAULT_SHARED_DATA", tmp_path / "nowhere")
    with pytest.raises(pytest.skip.Exception) as skipped:
        shared_data_file("mnist.npz")
    message = str(skipped.value)
    assert str(tmp_path / "nowhere") in message and "../shared/data" in message
    assert f"${SHARED_DATA_ENV} is not set" in message
