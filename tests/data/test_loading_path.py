"""Which path the training data takes: streamed when the decoded training split exceeds the
memory budget (overridable), in memory otherwise; arrays always in memory."""

from __future__ import annotations

import pytest
import torch

from advkit.config import ConfigError, TrainConfig
from advkit.data import DataError, load_dataset, open_splits
from advkit.data import loading_path as lp
from tests.data.folders import write_image_folder

CPU = torch.device("cpu")


@pytest.fixture
def folder(tmp_path, no_env):
    """30 training images of 28x28 (23,520 bytes decoded), 20 after holding out 10."""
    return open_splits("imagefolder", write_image_folder(tmp_path, 30, 3), val_size=10)


@pytest.mark.parametrize(
    ("budget", "path", "said"),
    [("15000", "stream", "(15.3 KiB) exceeds the memory budget (14.6 KiB"),
     ("16K", "memory", "(15.3 KiB) fits the memory budget (16.0 KiB")],
)  # fmt: skip
def test_auto_streams_what_exceeds_the_budget(folder, monkeypatch, budget, path, said):
    monkeypatch.setenv(lp.BUDGET_ENV, budget)
    chosen = lp.choose_path(folder, "auto", 2, CPU)
    assert (chosen.path, chosen.workers, chosen.decoded_bytes) == (path, 2, 20 * 28 * 28)
    assert said in chosen.reason and "$ADVKIT_MEMORY_BUDGET" in chosen.reason
    assert chosen.line().startswith(f"data: {path}, the decoded training split")
    assert chosen.line().endswith("; 2 data workers")


def test_the_budget_is_half_the_available_memory_shared_by_the_local_workers(monkeypatch):
    monkeypatch.delenv(lp.BUDGET_ENV, raising=False)
    monkeypatch.setattr(lp, "_available_memory", lambda: 10 * 2**30)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert lp.memory_budget(CPU) == (5 * 2**30, "50% of available memory")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert lp.memory_budget(CPU) == (5 * 2**30 // 4, "50% of available memory / 4 workers")


def test_a_requested_path_is_taken_and_arrays_never_stream(folder, shared_dir, monkeypatch):
    monkeypatch.setenv(lp.BUDGET_ENV, "1")
    assert lp.choose_path(folder, "memory", 0, CPU).path == "memory"
    monkeypatch.setenv(lp.BUDGET_ENV, "1T")
    assert lp.choose_path(folder, "stream", 0, CPU).reason == "--data-loading stream"
    arrays = load_dataset("mnist", shared_dir, val_size=0, subset=10)
    chosen = lp.choose_path(arrays, "auto", None, CPU)
    assert (chosen.path, chosen.workers, chosen.reason) == ("memory", 0, "mnist is read as arrays")
    with pytest.raises(DataError, match=r"mnist is read from array files.*cannot stream"):
        lp.choose_path(arrays, "stream", None, CPU)


@pytest.mark.parametrize(
    ("text", "count"), [("123", 123), ("8G", 8 * 2**30), ("1.5m", 3 * 2**19), ("2 GiB", 2**31)]
)
def test_budget_sizes(text, count):
    assert lp.parse_bytes(text) == count


def test_a_bad_budget_is_a_one_line_error(folder, monkeypatch):
    monkeypatch.setenv(lp.BUDGET_ENV, "lots")
    with pytest.raises(DataError, match=r"\$ADVKIT_MEMORY_BUDGET='lots' is not a size"):
        lp.choose_path(folder, "auto", 0, CPU)


def test_auto_workers_leave_a_core_to_each_training_process(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    for cpus, workers in ((1, 1), (2, 1), (4, 3), (64, lp.MAX_AUTO_WORKERS)):
        monkeypatch.setattr(lp.os, "sched_getaffinity", lambda _, n=cpus: set(range(n)))
        assert lp.auto_workers() == workers
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # 16 CPUs for 4 training processes
    monkeypatch.setattr(lp.os, "sched_getaffinity", lambda _: set(range(16)))
    assert lp.auto_workers() == 3


def test_config_reads_data_options():
    assert TrainConfig(data_workers="auto").data_workers is None
    assert TrainConfig(data_workers="3").data_workers == 3
    with pytest.raises(ConfigError, match="data_workers must be >= 0"):
        TrainConfig(data_workers=-1).validate()
    with pytest.raises(ConfigError, match="data_loading must be one of auto, memory, stream"):
        TrainConfig(data_loading="disk").validate()
