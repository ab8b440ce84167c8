"""Fixtures shared by the test modules."""

from __future__ import annotations

import os

import pytest
import torch

#: plugins that arrive with executorch's dependencies and that navya does not use; pytester's
#: runs (in a folder without pyproject.toml) would load them (2 s a start): see pyproject.toml
UNUSED_PLUGINS = "-p no:hydra_pytest -p no:kgb -p no:anyio"


@pytest.fixture(scope="session", autouse=True)
def _no_unused_plugins_in_pytester_runs():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTEST_ADDOPTS", f"{os.environ.get('PYTEST_ADDOPTS', '')} {UNUSED_PLUGINS}")
        # the suites that pytester runs build tiny models in well under a second: two spawned
        # build workers (torch imported twice) would cost more than they save; the tests of
        # the workers ask for them (tests/test_parallel_builds.py)
        mp.setenv("NAVYA_BUILD_WORKERS", "1")
        yield


@pytest.fixture(scope="module")
def one_thread_per_module():
    """One intra-op thread for a whole module (tiny models; a shared 2-core machine), restored
    afterwards. Use with ``pytestmark = pytest.mark.usefixtures("one_thread_per_module")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
