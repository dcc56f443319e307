"""Attack tests run single-threaded: their models are tiny, and on a shared 2-core machine the
OpenMP barriers of two threads cost far more than the parallelism gains."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
