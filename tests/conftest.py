"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread_per_module():
    """One intra-op thread for a whole module (tiny models; a shared 2-core machine), restored
    afterwards. Use with ``pytestmark = pytest.mark.usefixtures("one_thread_per_module")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
